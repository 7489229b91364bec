/// Chooses resources for a lease's reservations over a window (pure: reads a calendar, writes nothing).
///
/// Policy (see docs/packing.md):
/// - **Hosts**: among the hosts that match and are wholly free for the window, prefer those whose
///   free gap around the window is tightest (best fit in time), then by name for determinism, so
///   long free runs on other hosts stay whole for later, longer requests.
/// - **GPU slices**: `GPUPool`'s packing policy: least MIG capability lost (partly used GPUs first,
///   small profiles toward high slots), then tightest in time.
/// - **Instance slots**: `InstanceFit.choose`: hosts already busy in the window first, best fit.
///
/// Whole-host reservations are placed first (most constrained first), then GPU slices, then
/// instances, all against one tentative state so the reservations of one lease never collide.
public struct LeasePlanner: Sendable {
    public let inventory: HostInventory
    public let calendar: LeaseCalendar
    public var models: GPUModelTable
    public var policy: PlacementPolicy
    /// Whole-host requests among at most this many candidate hosts rank them all rather than walk
    /// the calendar's global indexes (same answer; tests set 0 to exercise the indexed search).
    public var exhaustiveRankingLimit = 64
    /// Plan GPU and instance requests on `narrowedPositions` first (same answer; tests compare).
    public var narrowsCandidates = true

    /// Hosts in name order (the tie-break order).
    public var hosts: [Host] { inventory.hosts }

    /// Numbers the hosts in (a copy of) `calendar`: O(hosts). Callers that plan often keep a
    /// `HostInventory` and use `init(inventory:calendar:)`.
    public init(
        hosts: [Host], calendar: LeaseCalendar, models: GPUModelTable = .builtIn, policy: PlacementPolicy = .packing
    ) {
        var calendar = calendar
        inventory = HostInventory(hosts: hosts, calendar: &calendar)
        self.calendar = calendar
        self.models = models
        self.policy = policy
    }

    /// O(1): `inventory` must have been built on `calendar` or an ancestor of it.
    public init(
        inventory: HostInventory, calendar: LeaseCalendar, models: GPUModelTable = .builtIn,
        policy: PlacementPolicy = .packing
    ) {
        precondition(inventory.matches(calendar), "HostInventory built on another calendar")
        self.inventory = inventory
        self.calendar = calendar
        self.models = models
        self.policy = policy
    }

    public enum Failure: Error, Sendable, Equatable {
        /// The request cannot fit whatever the time (too few matching hosts or too little capacity
        /// even on an empty cloud): a later start will not help.
        case neverFits(String)
        /// It would fit an empty cloud, but not what is free in this window.
        case busy(String)

        public var message: String {
            switch self {
            case .neverFits(let m), .busy(let m): return m
            }
        }
    }

    @inline(__always)
    func isEligibleHost(_ h: Host, _ r: ReservationRequest) -> Bool {
        h.isSchedulable && r.properties.matches(h)
    }

    func eligible(_ request: ReservationRequest) -> [Host] {
        hosts.filter { h in
            guard h.isSchedulable, request.properties.matches(h) else { return false }
            switch request.kind {
            case .host: return true
            case .gpu: return gpuIndices(h, request).isEmpty == false
            case .instance:
                return h.vcpus >= (request.vcpus ?? 0) && h.memoryMB >= (request.memoryMB ?? 0)
                    && h.diskGB >= (request.diskGB ?? 0)
                    && (request.gpuProfile == nil || !gpuIndices(h, request).isEmpty)
            }
        }
    }

    /// The GPUs of a host that can hold the request's profile (of its model, if one was named).
    func gpuIndices(_ h: Host, _ r: ReservationRequest) -> [(Int, GPUModel)] {
        h.gpus.enumerated().compactMap { i, g in
            guard let m = models.model(named: g.model), r.gpuModel == nil || r.gpuModel == g.model,
                let p = r.kind == .instance ? r.gpuProfile : r.profile, m.profile(named: p) != nil
            else { return nil }
            return (i, m)
        }
    }

    static func size(_ r: ReservationRequest) -> InstanceSize {
        InstanceSize(vcpus: r.vcpus ?? 0, memoryMB: r.memoryMB ?? 0, diskGB: r.diskGB ?? 0)
    }

    static func plural(_ n: Int64, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }

    /// Places every request in `window`. `keep[i]` lists what reservation i holds now and should
    /// keep wherever it is still free (lease updates).
    public func place(_ requests: [ReservationRequest], window: Interval, keep: [[Allocation]] = [])
        -> Result<[[Allocation]], Failure>
    {
        guard narrowsCandidates else { return place(requests, window: window, keep: keep, narrow: false) }
        let first = place(requests, window: window, keep: keep, narrow: true)
        // A narrowed attempt that fails proves nothing: decide on every host.
        if case .failure(.busy) = first, narrowingApplies(requests) {
            return place(requests, window: window, keep: keep, narrow: false)
        }
        return first
    }

    func place(_ requests: [ReservationRequest], window: Interval, keep: [[Allocation]], narrow: Bool)
        -> Result<[[Allocation]], Failure>
    {
        let narrowing = narrow && narrowingApplies(requests)
        var eligibleByRequest: [[Host]] = []
        var eligibleCount: [Int] = []
        /// Whole-host requests with a property filter: the matching schedulable hosts' positions.
        var eligiblePositions = [[Int]?](repeating: nil, count: requests.count)
        for (i, r) in requests.enumerated() {
            let what = r.properties == .all ? "" : " matching the properties"
            if r.kind == .host {
                // Whole hosts: no list needed (the search below meets hosts through the calendar).
                var matching: [Int]? = nil
                if r.properties != .all {
                    matching = hosts.indices.filter { inventory.schedulable[$0] && r.properties.matches(hosts[$0]) }
                }
                let count = matching?.count ?? inventory.schedulableCount
                eligiblePositions[i] = matching
                if Int64(count) < r.min {
                    return .failure(
                        .neverFits(
                            "reservations[\(i)] needs \(LeasePlanner.plural(r.min, "host")) but only \(count) schedulable host\(count == 1 ? " exists" : "s exist")\(what)"
                        ))
                }
                eligibleByRequest.append([])
                eligibleCount.append(count)
                continue
            }
            if r.properties == .all {
                // Per class of identical hosts: no per-host scan.
                let serving = inventory.classes.filter { c in
                    let h = hosts[c.representative]
                    switch r.kind {
                    case .gpu: return !gpuIndices(h, r).isEmpty
                    default: return classServes(h, r)
                    }
                }
                let count = serving.reduce(0) { $0 + $1.members }
                var cap = 0
                switch r.kind {
                case .host:
                    break
                case .gpu:
                    for c in serving {
                        let h = hosts[c.representative]
                        let per = GPUPool(
                            gpuIndices(h, r).map { GPUCandidate(host: h.name, gpuIndex: $0.0, model: $0.1) }
                        )
                        .capacity(profile: r.profile ?? "", gpuModel: r.gpuModel, ignoringOccupancy: true)
                        cap &+= per &* c.members
                    }
                    if Int64(cap) < r.min {
                        return .failure(
                            .neverFits(
                                "reservations[\(i)] asks for \(r.min) × \(r.profile ?? "?") but the schedulable GPUs\(what) could hold at most \(cap) even when empty"
                            ))
                    }
                case .instance:
                    let size = LeasePlanner.size(r)
                    if count == 0 {
                        return .failure(
                            .neverFits(
                                "reservations[\(i)] asks for instances of \(size) but no schedulable host\(what) is that large"
                            ))
                    }
                    for c in serving {
                        let h = hosts[c.representative]
                        let per = InstanceHostLoad(
                            host: h.name,
                            capacity: InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB),
                            limit: r.gpuProfile.map { p in
                                GPUPool(
                                    gpuIndices(h, r).map { GPUCandidate(host: h.name, gpuIndex: $0.0, model: $0.1) }
                                )
                                .capacity(profile: p, ignoringOccupancy: true)
                            }
                        ).maxAdditional(size)
                        switch r.affinity.flatMap(InstanceAffinity.init(rawValue:)) {
                        case .sameHost: cap = Swift.max(cap, per)
                        case .differentHost: cap &+= per > 0 ? c.members : 0
                        case nil: cap &+= per &* c.members
                        }
                    }
                    if Int64(cap) < r.min {
                        let rule = r.affinity.map { " with affinity \($0)" } ?? ""
                        return .failure(
                            .neverFits(
                                "reservations[\(i)] asks for \(r.min) instances of \(size)\(rule) but the schedulable hosts\(what) could hold at most \(cap) even when empty"
                            ))
                    }
                }
                // The list itself only when a request is planned on every host.
                eligibleByRequest.append(narrowing ? [] : eligible(r))
                eligibleCount.append(count)
                continue
            }
            let e = eligible(r)
            switch r.kind {
            case .host:
                break
            case .gpu:
                let pool = GPUPool(
                    e.flatMap { h in gpuIndices(h, r).map { GPUCandidate(host: h.name, gpuIndex: $0.0, model: $0.1) } })
                let cap = pool.capacity(profile: r.profile ?? "", gpuModel: r.gpuModel, ignoringOccupancy: true)
                if Int64(cap) < r.min {
                    return .failure(
                        .neverFits(
                            "reservations[\(i)] asks for \(r.min) × \(r.profile ?? "?") but the schedulable GPUs\(what) could hold at most \(cap) even when empty"
                        ))
                }
            case .instance:
                let size = LeasePlanner.size(r)
                if e.isEmpty {
                    return .failure(
                        .neverFits(
                            "reservations[\(i)] asks for instances of \(size) but no schedulable host\(what) is that large"
                        ))
                }
                let loads = e.map { h in
                    InstanceHostLoad(
                        host: h.name, capacity: InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB),
                        limit: r.gpuProfile.map { p in
                            GPUPool(gpuIndices(h, r).map { GPUCandidate(host: h.name, gpuIndex: $0.0, model: $0.1) })
                                .capacity(profile: p, ignoringOccupancy: true)
                        })
                }
                let cap = InstanceFit.maxPlaceable(
                    size: size, affinity: r.affinity.flatMap(InstanceAffinity.init(rawValue:)), hosts: loads)
                if Int64(cap) < r.min {
                    let rule = r.affinity.map { " with affinity \($0)" } ?? ""
                    return .failure(
                        .neverFits(
                            "reservations[\(i)] asks for \(r.min) instances of \(size)\(rule) but the schedulable hosts\(what) could hold at most \(cap) even when empty"
                        ))
                }
            }
            eligibleByRequest.append(e)
            eligibleCount.append(e.count)
        }
        func rank(_ k: ReservationKind) -> Int { k == .host ? 0 : (k == .gpu ? 1 : 2) }
        let order = requests.indices.sorted { a, b in
            (rank(requests[a].kind), eligibleCount[a], a) < (rank(requests[b].kind), eligibleCount[b], b)
        }
        var takenWhole: Set<String> = []
        var usedPartly: Set<String> = []
        var gpuPool: GPUPool? = nil
        var instanceAdds: [String: [InstanceSize]] = [:]
        var result = [[Allocation]](repeating: [], count: requests.count)
        var narrowed: [Int]? = nil
        /// Computed once host requests are placed (they come first), so `takenWhole` is final.
        func narrowedHosts() -> [Host] {
            if narrowed == nil {
                narrowed = narrowedPositions(requests, window: window, keep: keep, takenWhole: takenWhole)
            }
            return narrowed!.map { hosts[$0] }
        }
        /// Every MIG GPU of every schedulable host not taken whole, with what the calendar holds on it.
        func makePool() {
            guard gpuPool == nil else { return }
            var candidates: [GPUCandidate] = []
            for h in narrowing ? narrowedHosts() : hosts
            where h.isSchedulable && !h.gpus.isEmpty && !takenWhole.contains(h.name) {
                let n = calendar.number(of: h.name)
                // One visit of the host's tree for all its GPUs; nil when it is reserved whole.
                guard
                    let occupancies = n.map({ calendar.gpuOccupancies($0, gpus: h.gpus.count, during: window) })
                        ?? Array(repeating: (0, false), count: h.gpus.count)
                else { continue }
                let slack = n.map { calendar.slack($0, around: window) } ?? 2 * LeaseCalendar.slackCap
                for (idx, g) in h.gpus.enumerated() {
                    guard let m = models.model(named: g.model), m.mig else { continue }
                    candidates.append(
                        GPUCandidate(
                            host: h.name, gpuIndex: idx, model: m,
                            occupancy: GPUOccupancy(calendar: occupancies[idx], model: m),
                            slack: slack))
                }
            }
            gpuPool = GPUPool(candidates)
        }
        var windowText: String { "from \(Timestamp(seconds: window.start)) to \(Timestamp(seconds: window.end))" }
        for i in order {
            let r = requests[i]
            let kept = i < keep.count ? keep[i] : []
            switch r.kind {
            case .host:
                func wanted(_ h: Host) -> Bool {
                    isEligibleHost(h, r) && !takenWhole.contains(h.name) && !usedPartly.contains(h.name)
                }
                var chosen: [String] = []
                for a in kept where !chosen.contains(a.host) && Int64(chosen.count) < r.max {
                    guard let n = calendar.number(of: a.host), let pos = inventory.position(ofNumber: n),
                        wanted(hosts[pos]),
                        calendar.isFree(n, during: window)
                    else { continue }
                    chosen.append(a.host)
                }
                let need = Int(r.max) - chosen.count
                if need > 0 {
                    let chosenSet = Set(chosen)
                    switch policy {
                    case .packing:
                        // Hosts with GPUs last: taking one whole takes all its GPU slices too.
                        let excluded = !takenWhole.isEmpty || !usedPartly.isEmpty || !chosenSet.isEmpty
                        let anyProperties = r.properties != .all
                        func rank(_ pos: Int) -> Int? {
                            guard inventory.schedulable[pos] else { return nil }
                            if anyProperties || excluded {
                                let h = hosts[pos]
                                guard wanted(h), !chosenSet.contains(h.name) else { return nil }
                            }
                            return inventory.gpuCounts[pos]
                        }
                        // Few hosts to choose among (a property filter, a small inventory on a big
                        // calendar): ranking them all beats walking the whole calendar's indexes.
                        let few =
                            inventory.hosts.count <= exhaustiveRankingLimit
                            || eligibleCount[i] * 16 < calendar.hostNames.count
                        let ranked =
                            few
                            ? rankEveryFree(
                                window: window, count: need, among: eligiblePositions[i] ?? Array(hosts.indices),
                                rank: rank)
                            : tightestFree(window: window, count: need, minRank: inventory.fewestGPUs, rank: rank)
                        chosen += ranked.map { hosts[$0].name }
                    case .firstFit:
                        for (pos, h) in hosts.enumerated() where chosen.count < Int(r.max) {
                            if wanted(h), !chosenSet.contains(h.name),
                                calendar.isFree(inventory.numbers[pos], during: window)
                            {
                                chosen.append(h.name)
                            }
                        }
                    }
                }
                if Int64(chosen.count) < r.min {
                    return .failure(
                        .busy(
                            "reservations[\(i)] needs \(LeasePlanner.plural(r.min, "host")) but only \(chosen.count) matching host\(chosen.count == 1 ? " is" : "s are") free \(windowText)"
                        ))
                }
                takenWhole.formUnion(chosen)
                result[i] = chosen.map { Allocation(host: $0) }
            case .gpu:
                makePool()
                // Narrowed: the pool holds only schedulable hosts not taken whole, and without a
                // property filter every GPU of the profile's model qualifies.
                let hostsAllowed: Set<String>? =
                    narrowing ? nil : Set(eligibleByRequest[i].map(\.name)).subtracting(takenWhole)
                let keepSlices = kept.compactMap(GPUSliceAssignment.init)
                guard
                    let placed = gpuPool!.place(
                        profile: r.profile ?? "", count: Int(r.min), gpuModel: r.gpuModel, hosts: hostsAllowed,
                        policy: policy,
                        keep: keepSlices)
                else {
                    let free = gpuPool!.capacity(profile: r.profile ?? "", gpuModel: r.gpuModel, hosts: hostsAllowed)
                    return .failure(
                        .busy(
                            "reservations[\(i)] needs \(r.min) × \(r.profile ?? "?") but only \(free) fit on the GPUs free \(windowText)"
                        ))
                }
                for p in placed { usedPartly.insert(p.host) }
                result[i] = placed.map(\.allocation)
            case .instance:
                let size = LeasePlanner.size(r)
                if r.gpuProfile != nil { makePool() }
                var loads: [InstanceHostLoad] = []
                let candidates = narrowing ? narrowedHosts().filter { classServes($0, r) } : eligibleByRequest[i]
                for h in candidates where !takenWhole.contains(h.name) {
                    guard var load = calendar.instanceLoad(host: h.name, during: window) else { continue }
                    for extra in instanceAdds[h.name] ?? [] {
                        load.append((window, extra.vcpus, extra.memoryMB, extra.diskGB))
                    }
                    // With a gpu_profile, each instance also needs one free slice of it on the same host.
                    let limit = r.gpuProfile.map {
                        gpuPool!.capacity(profile: $0, gpuModel: r.gpuModel, hosts: [h.name])
                    }
                    loads.append(
                        InstanceHostLoad(
                            host: h.name,
                            capacity: InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB), load: load,
                            window: window, limit: limit, slack: calendar.slack(host: h.name, around: window)))
                }
                let affinity = r.affinity.flatMap(InstanceAffinity.init(rawValue:))
                let keptSlots = kept.compactMap(InstanceSlotAssignment.init)
                // Packing keeps GPU hosts for GPU work: try hosts without GPUs first (current
                // placements are always candidates), then every host.
                let gpuHosts = Set(candidates.filter { !$0.gpus.isEmpty }.map(\.name)).subtracting(
                    keptSlots.map(\.host))
                let firstTry: [InstanceSlotAssignment]? =
                    policy == .packing && !gpuHosts.isEmpty
                    ? InstanceFit.choose(
                        count: Int(r.min), size: size, affinity: affinity,
                        hosts: loads.filter { !gpuHosts.contains($0.host) },
                        policy: policy, keep: keptSlots)
                    : nil
                guard
                    let placed = firstTry
                        ?? InstanceFit.choose(
                            count: Int(r.min), size: size, affinity: affinity, hosts: loads, policy: policy,
                            keep: keptSlots)
                else {
                    let free = InstanceFit.maxPlaceable(
                        size: size, affinity: r.affinity.flatMap(InstanceAffinity.init(rawValue:)), hosts: loads)
                    return .failure(
                        .busy(
                            "reservations[\(i)] needs \(r.min) instances of \(size) but only \(free) fit on the hosts free \(windowText)"
                        ))
                }
                var allocations: [Allocation] = []
                for p in placed {
                    usedPartly.insert(p.host)
                    instanceAdds[p.host, default: []].append(size * p.slots)
                    allocations.append(p.allocation)
                    if let profile = r.gpuProfile {
                        let keepSlices = kept.filter { $0.host == p.host }.compactMap(GPUSliceAssignment.init)
                        guard
                            let slices = gpuPool!.place(
                                profile: profile, count: p.slots, gpuModel: r.gpuModel, hosts: [p.host], policy: policy,
                                keep: keepSlices)
                        else {
                            return .failure(
                                .busy(
                                    "reservations[\(i)] needs \(p.slots) × \(profile) on \(p.host) but they no longer fit \(windowText)"
                                ))
                        }
                        allocations.append(contentsOf: slices.map(\.allocation))
                    }
                }
                result[i] = allocations
            }
        }
        return .success(result)
    }
}
