/// Backfill placement of preemptibles and choice of preemption victims (pure: no clock, no I/O).
///
/// Policy (docs/preemptibles.md):
/// - **Backfill**: a preemptible goes only where, for its whole minimum lifetime, no reservation
///   and no other running preemptible holds what it needs. Among such hosts: the one whose
///   capacity a reservation next needs *latest* (it should live long), then hosts without GPUs for
///   a request without a GPU profile, then the busiest (best fit), then by name.
/// - **Victims**: on each host, at each instant a reservation begins to hold capacity, the
///   preemptibles that overlap what it holds (the whole host, or the same GPU slices) must go; if
///   shared vcpus/memory/disk are still short, the fewest more preemptibles go (ones already
///   scheduled, or just created, count as free), then those whose preemption loses the least work
///   (vcpus × seconds run), then the newest. Only preemptibles
///   past their guarantee at that instant are ever chosen.
/// - **When**: a victim is preempted `notice` seconds before the reservation needs its capacity,
///   never before its `guaranteedUntil`, never in the past. A preemption once scheduled is kept
///   (Slurm has been told to drain); it is moved earlier if a reservation needs it earlier.
public enum PreemptionPlanner {
    /// One preemptible on a host, as victim choice sees it.
    public struct Holding: Sendable, Hashable {
        public var id: String
        public var size: InstanceSize
        public var gpu: Int?
        public var slot: Int?
        public var sliceSize: Int
        public var mediaExtensions: Bool
        public var createdAt: Int64
        public var guaranteedUntil: Int64
        public var preemptAt: Int64?

        public init(
            id: String, size: InstanceSize, gpu: Int? = nil, slot: Int? = nil, sliceSize: Int = 1,
            mediaExtensions: Bool = false, createdAt: Int64, guaranteedUntil: Int64, preemptAt: Int64? = nil
        ) {
            self.id = id
            self.size = size
            self.gpu = gpu
            self.slot = slot
            self.sliceSize = sliceSize
            self.mediaExtensions = mediaExtensions
            self.createdAt = createdAt
            self.guaranteedUntil = guaranteedUntil
            self.preemptAt = preemptAt
        }

        public init(_ p: Preemptible) {
            self.init(
                id: p.id, size: p.size, gpu: p.gpu, slot: p.slot, sliceSize: p.sliceSize ?? 1,
                mediaExtensions: (p.gpuProfile ?? "").hasSuffix("+me"), createdAt: p.createdAt.seconds,
                guaranteedUntil: p.guaranteedUntil.seconds, preemptAt: p.preemptAt?.seconds)
        }

        var sliceMask: UInt16 { gpu == nil ? 0 : UInt16(((1 << sliceSize) - 1) << (slot ?? 0)) }
    }

    /// A reservation's allocation on the host.
    public struct Holder: Sendable, Hashable {
        public var interval: Interval
        public var leaseID: String
        public var usage: ResourceUsage
        public init(interval: Interval, leaseID: String, usage: ResourceUsage) {
            self.interval = interval
            self.leaseID = leaseID
            self.usage = usage
        }
    }

    /// A preemption to schedule (or to move earlier).
    public struct Decision: Sendable, Hashable {
        public var preemptibleID: String
        public var preemptAt: Int64
        /// When the reservation takes the capacity, which lease it is, and until when it holds it.
        public var neededAt: Int64
        public var neededBy: String
        public var neededUntil: Int64
    }

    public struct Plan: Sendable, Hashable {
        public var decisions: [Decision] = []
        /// Instants at which the reservations cannot fit even with every preemptible past its
        /// guarantee gone: a placement that produces one breaks a guarantee and must be refused.
        public var overcommitted: [Int64] = []
    }

    /// What the reservations on a host hold at one instant.
    struct Instant {
        var t: Int64
        var whole: Holder?
        /// Per GPU, each reservation's slices there (so a victim names the one it is in the way of).
        var slices: [Int: [(mask: UInt16, me: Bool, holder: Holder)]] = [:]
        var load = InstanceSize.zero
        /// The lease named for a shortage of shared capacity: one that begins here if any does.
        var instanceHolder: Holder?

        init(t: Int64, active: [Holder]) {
            self.t = t
            for h in active {
                switch h.usage {
                case .wholeHost:
                    whole = whole ?? h
                case .gpuSlices(let g, let slot, let size, let me):
                    slices[g, default: []].append((UInt16(((1 << size) - 1) << slot), me, h))
                case .instances(let n, let v, let mem, let d):
                    load = load + InstanceSize(vcpus: v * n, memoryMB: mem * n, diskGB: d * n)
                    if instanceHolder == nil || h.interval.start == t { instanceHolder = h }
                }
            }
        }

        /// The reservation a preemptible is in the way of by its own placement (whole host or GPU
        /// slices), nil if it only shares vcpus/memory/disk.
        func blocker(of p: Holding) -> Holder? {
            if let whole { return whole }
            guard let g = p.gpu else { return nil }
            return slices[g]?.first { $0.mask & p.sliceMask != 0 || ($0.me && p.mediaExtensions) }?.holder
        }

        /// Whether these preemptibles can all run beside the reservations at this instant.
        func admits(_ alive: [Holding], capacity: InstanceSize) -> Bool {
            if alive.isEmpty { return true }
            if whole != nil { return false }
            if alive.contains(where: { blocker(of: $0) != nil }) { return false }
            return alive.reduce(load) { $0 + $1.size }.fits(in: capacity)
        }
    }

    /// Plans the preemptions one host needs so that, at every instant from `now` on, its
    /// reservations and the preemptibles still running fit its capacity.
    ///
    /// A first pass walks the instants at which reservations begin to hold capacity and picks
    /// victims by the policy above. Because a victim is preempted `notice` before the instant that
    /// needs it, a victim picked for a later instant may already be gone at an earlier one; so a
    /// second pass drops every new victim the others make unnecessary (latest first), and a third
    /// moves each remaining one to the first instant that really needs it.
    ///
    /// `preferred` are chosen first where a choice exists (counted like already-scheduled ones): a
    /// preemptible just created is preempted itself rather than making way by preempting others.
    public static func plan(
        capacity: InstanceSize, holders: [Holder], preemptibles: [Holding], now: Int64, notice: Int64,
        preferred: Set<String> = []
    ) -> Plan {
        var out = Plan()
        guard !preemptibles.isEmpty else { return out }
        let future = holders.filter { $0.interval.end > now }
        let instants = Set(future.map { Swift.max($0.interval.start, now) }).sorted().map { t in
            Instant(t: t, active: future.filter { $0.interval.start <= t && t < $0.interval.end })
        }
        let prior: [String: Int64] = Dictionary(
            uniqueKeysWithValues: preemptibles.compactMap { p in p.preemptAt.map { (p.id, $0) } })
        var preemptAt = prior
        func when(_ p: Holding, neededAt t: Int64) -> Int64 { Swift.max(t - notice, p.guaranteedUntil, now) }
        func alive(at t: Int64) -> [Holding] { preemptibles.filter { (preemptAt[$0.id] ?? Int64.max) > t } }
        func feasible() -> Bool { instants.allSatisfy { $0.admits(alive(at: $0.t), capacity: capacity) } }

        // 1. Forward pass.
        for inst in instants {
            let t = inst.t
            let living = alive(at: t)
            if living.isEmpty { continue }
            var victims: [Holding] = []
            var remaining: [Holding] = []
            for p in living {
                if inst.blocker(of: p) != nil { victims.append(p) } else { remaining.append(p) }
            }
            if inst.whole == nil, inst.instanceHolder != nil {
                let used = remaining.reduce(inst.load) { $0 + $1.size }
                if !used.fits(in: capacity) {
                    let candidates = remaining.filter { $0.guaranteedUntil <= t }
                    if let chosen = chooseExtra(
                        candidates: candidates, deficit: used - capacity, at: t, notice: notice, now: now,
                        scheduled: Set(preemptAt.keys).union(preferred))
                    {
                        victims += chosen
                    } else {
                        out.overcommitted.append(t)
                    }
                }
            }
            for p in victims {
                guard p.guaranteedUntil <= t else {
                    out.overcommitted.append(t)
                    continue
                }
                let at = when(p, neededAt: t)
                if let current = preemptAt[p.id], current <= at { continue }
                preemptAt[p.id] = at
            }
        }
        out.overcommitted = Array(Set(out.overcommitted)).sorted()
        guard out.overcommitted.isEmpty else { return out }

        // 2. Drop victims the others make unnecessary, latest first (a dropped one keeps its prior
        //    schedule, if it had one).
        let changed = { preemptAt.filter { prior[$0.key] != $0.value }.keys }
        for id in changed().sorted(by: { (preemptAt[$0]!, $0) > (preemptAt[$1]!, $1) }) {
            let chosen = preemptAt[id]
            preemptAt[id] = prior[id]
            if !feasible() { preemptAt[id] = chosen }
        }

        // 3. Each remaining change as late as it can be: the first instant it is in the way, with
        //    the others as they now stand; never later than a prior schedule.
        var decisions: [Decision] = []
        for id in changed().sorted(by: { (preemptAt[$0]!, $0) < (preemptAt[$1]!, $1) }) {
            guard let p = preemptibles.first(where: { $0.id == id }) else { continue }
            preemptAt[id] = nil
            var need: Instant? = nil
            for inst in instants where !inst.admits(alive(at: inst.t), capacity: capacity) {
                need = inst
                break
            }
            guard let inst = need else {  // not needed after all (cannot happen after pass 2)
                preemptAt[id] = prior[id]
                continue
            }
            var at = when(p, neededAt: inst.t)
            if let before = prior[id], before <= at { at = before }
            preemptAt[id] = at
            if at == prior[id] { continue }
            let holder = inst.blocker(of: p) ?? inst.instanceHolder
            decisions.append(
                Decision(
                    preemptibleID: id, preemptAt: at, neededAt: inst.t, neededBy: holder?.leaseID ?? "",
                    neededUntil: holder?.interval.end ?? inst.t))
        }
        out.decisions = decisions.sorted { ($0.preemptAt, $0.preemptibleID) < ($1.preemptAt, $1.preemptibleID) }
        return out
    }

    /// The work a preemption at `at` destroys: vcpus × seconds run (at least 1 vcpu).
    static func workLost(_ p: Holding, at: Int64) -> Int64 {
        Swift.max(1, p.size.vcpus) * Swift.max(0, at - p.createdAt)
    }

    /// The cheapest set of `candidates` whose removal covers `deficit` (each dimension ≤ 0 after):
    /// fewest newly preempted, then fewest in all, then least work lost, then newest. Exact for up
    /// to 16 candidates, greedy beyond. nil when even all of them do not cover it.
    static func chooseExtra(
        candidates: [Holding], deficit: InstanceSize, at t: Int64, notice: Int64, now: Int64, scheduled: Set<String>
    ) -> [Holding]? {
        func covers(_ freed: InstanceSize) -> Bool {
            freed.vcpus >= deficit.vcpus && freed.memoryMB >= deficit.memoryMB && freed.diskGB >= deficit.diskGB
        }
        let total = candidates.reduce(InstanceSize.zero) { $0 + $1.size }
        guard covers(total) else { return nil }
        let when = { (p: Holding) in Swift.max(t - notice, p.guaranteedUntil, now) }
        typealias Cost = (new: Int, count: Int, work: Int64, age: Int64)
        func cost(_ set: [Holding]) -> Cost {
            (
                set.filter { !scheduled.contains($0.id) }.count, set.count,
                set.reduce(0) { $0 + workLost($1, at: when($1)) },
                -set.reduce(0) { $0 + $1.createdAt }
            )
        }
        func better(_ a: Cost, _ b: Cost) -> Bool { (a.new, a.count, a.work, a.age) < (b.new, b.count, b.work, b.age) }
        if candidates.count <= 16 {
            var best: [Holding]? = nil
            var bestCost: Cost? = nil
            for mask in 1..<(1 << candidates.count) {
                var freed = InstanceSize.zero
                var set: [Holding] = []
                for (i, p) in candidates.enumerated() where mask & (1 << i) != 0 {
                    freed = freed + p.size
                    set.append(p)
                }
                guard covers(freed) else { continue }
                let c = cost(set)
                if bestCost == nil || better(c, bestCost!) {
                    best = set
                    bestCost = c
                }
            }
            return best
        }
        // Greedy: already-scheduled ones first (no new victim), then the largest share of what is
        // short, then least work lost; then drop any that turn out unnecessary.
        func share(_ p: Holding) -> Double {
            func part(_ have: Int64, _ short: Int64) -> Double {
                short > 0 ? Double(Swift.min(have, short)) / Double(short) : 0
            }
            return part(p.size.vcpus, deficit.vcpus) + part(p.size.memoryMB, deficit.memoryMB)
                + part(p.size.diskGB, deficit.diskGB)
        }
        let ordered = candidates.sorted { a, b in
            let ka = (scheduled.contains(a.id) ? 0 : 1), kb = (scheduled.contains(b.id) ? 0 : 1)
            if ka != kb { return ka < kb }
            let sa = share(a), sb = share(b)
            if sa != sb { return sa > sb }
            return (workLost(a, at: when(a)), a.id) < (workLost(b, at: when(b)), b.id)
        }
        var chosen: [Holding] = []
        var freed = InstanceSize.zero
        for p in ordered where !covers(freed) {
            chosen.append(p)
            freed = freed + p.size
        }
        for i in chosen.indices.reversed() {
            let without = freed - chosen[i].size
            if covers(without) {
                freed = without
                chosen.remove(at: i)
            }
        }
        return chosen
    }

    // MARK: - Backfill

    /// Where a new preemptible goes.
    public struct Placement: Sendable, Hashable {
        public var host: String
        public var gpu: Int?
        public var slot: Int?
        public var sliceSize: Int?
    }

    public enum BackfillFailure: Error, Sendable, Equatable {
        /// No schedulable host could ever hold it (too large, or no GPU with that profile).
        case neverFits(String)
        /// Reservations and running preemptibles leave no room for its whole minimum lifetime now.
        case busy(String)
    }

    /// Chooses a host for a preemptible of `size` (and one slice of `gpuProfile`) that must run
    /// undisturbed over `window` (creation to guaranteed time), against `calendar` counting
    /// preemptibles as occupying.
    public static func backfill(
        size: InstanceSize, gpuProfile: String?, window: Interval, hosts: [Host], calendar: LeaseCalendar,
        models: GPUModelTable
    ) -> Result<Placement, BackfillFailure> {
        var cal = calendar
        cal.preemptibleView = .occupying
        func gpus(_ h: Host) -> [(Int, GPUModel)] {
            guard let profile = gpuProfile else { return [] }
            return h.gpus.enumerated().compactMap { i, g in
                guard let m = models.model(named: g.model), m.mig, m.profile(named: profile) != nil else { return nil }
                return (i, m)
            }
        }
        let eligible = hosts.filter { h in
            h.isSchedulable && size.fits(in: InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB))
                && (gpuProfile == nil || !gpus(h).isEmpty)
        }
        if eligible.isEmpty {
            let what = gpuProfile.map { " with a GPU offering \($0)" } ?? ""
            return .failure(.neverFits("no schedulable host\(what) can hold a preemptible of \(size)"))
        }
        typealias Rank = (horizon: Int64, gpuHost: Int, leftover: Int64, name: String)
        var best: (Rank, Placement)? = nil
        for h in eligible {
            guard let load = cal.instanceLoad(host: h.name, during: window) else { continue }
            let cap = InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB)
            let hostLoad = InstanceHostLoad(host: h.name, capacity: cap, load: load, window: window)
            guard hostLoad.maxAdditional(size) >= 1 else { continue }
            var placement = Placement(host: h.name)
            if let profile = gpuProfile {
                var pool = GPUPool(
                    gpus(h).map { i, m in
                        GPUCandidate(
                            host: h.name, gpuIndex: i, model: m,
                            occupancy: GPUOccupancy(
                                calendar: cal.gpuOccupancy(host: h.name, gpu: i, during: window), model: m))
                    })
                guard let slice = pool.place(profile: profile, count: 1)?.first else { continue }
                placement.gpu = slice.gpu
                placement.slot = slice.slot
                placement.sliceSize = slice.size
            }
            let rank: Rank = (
                -(cal.nextReservationStart(host: h.name, atOrAfter: window.start) ?? LeaseCalendar.openEnd),
                gpuProfile == nil && !h.gpus.isEmpty ? 1 : 0, hostLoad.leftoverScore(after: 1, of: size), h.name
            )
            if best == nil || rank < best!.0 { best = (rank, placement) }
        }
        guard let chosen = best?.1 else {
            let what = gpuProfile.map { " and a free \($0) slice" } ?? ""
            return .failure(
                .busy(
                    "no host has \(size)\(what) free of reservations and other preemptibles from \(Timestamp(seconds: window.start)) to \(Timestamp(seconds: window.end))"
                ))
        }
        return .success(chosen)
    }
}
