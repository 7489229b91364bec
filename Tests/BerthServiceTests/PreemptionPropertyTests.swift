import BerthContract
import BerthCore
import BerthJSON
import BerthStore
import BerthTestSupport
import Logging
import Testing

@testable import BerthService

#if canImport(Glibc)
    import Glibc
#endif

/// Random sequences of preemptible creates and deletes, host/GPU/instance lease creates, updates and
/// deletes, clock moves and one restart, driving a real `Scheduler`. An oracle built only from
/// method results and committed events checks after every step that:
///
/// - (a) no preemptible is preempted before its `guaranteed_until` (and each is preempted exactly
///   at the last `preempt_at` announced for it);
/// - (b) no lease starts while a running preemptible holds what it needs (the whole host, its GPU
///   slices, or host capacity beyond what is left);
/// - (c) a preemption is scheduled only when needed: the lease named holds capacity on the host at
///   `needed_at`, and from then on, at some instant a reservation begins to hold capacity, the
///   reservations there and the preemptibles not gone by then do not fit with it kept (strictly at
///   `needed_at` itself);
/// - (d) `preempt_at` is never after `needed_at`, follows the notice rule
///   (`max(needed_at - notice, guaranteed_until, decided_at)`), and only ever moves earlier;
/// - (e) the announced future is consistent: at every instant from now on, the leases and the
///   preemptibles not yet due for preemption fit every host;
/// - (f) a lease of whole hosts preempts nobody when enough hosts are entirely free;
/// - (g) creating a preemptible never schedules another's preemption (it goes itself, or one
///   already going is moved earlier);
///
/// and that a restart keeps the preemptibles, their statuses and their pending preemptions, which
/// then fire. `preemption.*` events and `preemptible.list` must agree throughout.
@Suite struct PreemptionPropertyTests {
    static let notice: Int64 = 600
    static let policy = SchedulerPolicy(
        preemption: PreemptionPolicy(defaultMinLifetime: 3600, maxMinLifetime: 86_400, notice: notice))
    static let model = GPUModelTable.builtIn.model(named: "A100-40GB")!
    static let cpuHost = InstanceSize(vcpus: 16, memoryMB: 32_768, diskGB: 200)
    static let gpuHost = InstanceSize(vcpus: 32, memoryMB: 65_536, diskGB: 400)
    static let capacity: [String: InstanceSize] = [
        "c0": cpuHost, "c1": cpuHost, "c2": cpuHost, "c3": cpuHost, "g0": gpuHost,
    ]
    static let preemptibleProfiles = ["1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb"]
    static let leaseProfiles = ["1g.5gb", "1g.5gb+me", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]

    static func makeScheduler(_ dir: String) throws -> (Scheduler, BerthStore) {
        let store = try BerthStore(directory: dir)
        let s = try Scheduler(
            store: store, clock: BerthClock(mode: .manual, initial: epoch), policy: policy,
            logger: Logger(label: "test"))
        return (s, store)
    }

    static func addInventory(_ s: Scheduler) async throws {
        for i in 0..<4 {
            _ = try await s.call(
                .hostCreate,
                [
                    "name": .string("c\(i)"), "vcpus": .int(cpuHost.vcpus), "memory_mb": .int(cpuHost.memoryMB),
                    "disk_gb": .int(cpuHost.diskGB),
                ])
        }
        _ = try await s.call(
            .hostCreate,
            [
                "name": "g0", "vcpus": .int(gpuHost.vcpus), "memory_mb": .int(gpuHost.memoryMB),
                "disk_gb": .int(gpuHost.diskGB),
                "gpus": [["model": "A100-40GB"], ["model": "A100-40GB"]],
            ])
    }

    // MARK: - Oracle

    /// A GPU slice: memory slices `[slot, slot + size)` of one GPU.
    struct Slice: Hashable {
        var gpu: Int
        var slot: Int
        var size: Int
        var me: Bool
        var mask: UInt16 { UInt16(((1 << size) - 1) << slot) }
    }

    struct OPreemptible {
        var id: String
        var host: String
        var size: InstanceSize
        var slice: Slice?
        var createdAt: Int64
        var guaranteedUntil: Int64
        /// Creation order in the trace (ids are random; choices must not depend on them).
        var order = 0
        /// The last `preempt_at` announced by a `preemption.scheduled` event.
        var preemptAt: Int64?
        var neededAt: Int64?
        var endedAt: Int64?
        var preempted = false
        var deleted = false

        /// Holds capacity at `t`, as things actually went.
        func running(at t: Int64) -> Bool { createdAt <= t && endedAt.map { t < $0 } != false }
        /// Holds capacity at `t`, as announced (a scheduled preemption counts as done).
        func planned(at t: Int64) -> Bool { running(at: t) && preemptAt.map { t < $0 } != false }
    }

    /// What one allocation of a lease takes from its host.
    enum Hold {
        case whole
        case slice(Slice)
        case instances(InstanceSize)
    }

    struct OLease {
        var id: String
        var start: Int64
        var end: Int64
        var holds: [String: [Hold]]
        var order = 0
        func holds(at t: Int64) -> Bool { start <= t && t < end }
    }

    static func holds(_ l: Lease) -> [String: [Hold]] {
        var out: [String: [Hold]] = [:]
        for r in l.reservations {
            for a in r.allocations {
                if r.request.kind == .host {
                    out[a.host, default: []].append(.whole)
                } else if let gpu = a.gpu {
                    let name = a.profile ?? r.request.gpuProfile ?? r.request.profile ?? ""
                    let profile = model.profile(named: name)
                    out[a.host, default: []].append(
                        .slice(
                            Slice(
                                gpu: gpu, slot: a.slot ?? 0, size: profile?.size ?? 8,
                                me: profile?.mediaExtensions ?? false)))
                } else {
                    let n = Int64(a.slots ?? 1)
                    out[a.host, default: []].append(
                        .instances(
                            InstanceSize(
                                vcpus: (r.request.vcpus ?? 0) * n, memoryMB: (r.request.memoryMB ?? 0) * n,
                                diskGB: (r.request.diskGB ?? 0) * n)))
                }
            }
        }
        return out
    }

    struct Oracle {
        var leases: [String: OLease] = [:]
        var preemptibles: [String: OPreemptible] = [:]
        var lastSeq: Int64 = 0
        var nextOrder = 0
        var scheduledEvents = 0
        var executedEvents = 0
        var leaseStarts = 0

        mutating func record(lease json: JSON) throws {
            let l = try #require(Lease(json: json))
            let order = leases[l.id]?.order ?? nextOrder
            nextOrder += 1
            leases[l.id] = OLease(
                id: l.id, start: l.start.seconds, end: l.end.seconds, holds: PreemptionPropertyTests.holds(l),
                order: order)
        }

        mutating func record(preemptible json: JSON) throws {
            let id = try #require(json["id"]?.stringValue)
            var slice: Slice? = nil
            if let name = json["gpu_profile"]?.stringValue {
                let profile = try #require(model.profile(named: name))
                slice = Slice(
                    gpu: Int(try #require(json["gpu"]?.intValue)), slot: Int(try #require(json["slot"]?.intValue)),
                    size: profile.size,
                    me: profile.mediaExtensions)
            }
            func ts(_ k: String) throws -> Int64 {
                try #require(json[k]?.stringValue.flatMap(Timestamp.init(rfc3339:))).seconds
            }
            preemptibles[id] = OPreemptible(
                id: id, host: try #require(json["host"]?.stringValue),
                size: InstanceSize(
                    vcpus: try #require(json["vcpus"]?.intValue), memoryMB: try #require(json["memory_mb"]?.intValue),
                    diskGB: try #require(json["disk_gb"]?.intValue)),
                slice: slice, createdAt: try ts("created_at"), guaranteedUntil: try ts("guaranteed_until"),
                order: nextOrder)
            nextOrder += 1
        }

        /// What does not fit on `host` at `t` among the leases holding then and `preemptibles`.
        func conflicts(host: String, at t: Int64, preemptibles ps: [OPreemptible]) -> [String] {
            var out: [String] = []
            var wholeBy: [String] = []
            var sharedBy: Set<String> = []
            var masks: [Int: UInt16] = [:]
            var meCount: [Int: Int] = [:]
            var used = InstanceSize.zero
            func slice(_ s: Slice, _ who: String) {
                if masks[s.gpu, default: 0] & s.mask != 0 {
                    out.append("\(who): slices \(s.slot)+\(s.size) of GPU \(s.gpu) taken")
                }
                masks[s.gpu, default: 0] |= s.mask
                if s.me {
                    meCount[s.gpu, default: 0] += 1
                    if meCount[s.gpu]! > 1 { out.append("\(who): a second +me instance on GPU \(s.gpu)") }
                }
            }
            for l in leases.values where l.holds(at: t) {
                for h in l.holds[host] ?? [] {
                    switch h {
                    case .whole: wholeBy.append("lease \(l.id)")
                    case .slice(let s):
                        sharedBy.insert("lease \(l.id)")
                        slice(s, "lease \(l.id)")
                    case .instances(let size):
                        sharedBy.insert("lease \(l.id)")
                        used = used + size
                    }
                }
            }
            for p in ps where p.host == host {
                sharedBy.insert("preemptible \(p.id)")
                used = used + p.size
                if let s = p.slice { slice(s, "preemptible \(p.id)") }
            }
            if wholeBy.count > 1 { out.append("host reserved whole by \(wholeBy)") }
            if !wholeBy.isEmpty && !sharedBy.isEmpty {
                out.append("\(wholeBy[0]) holds the whole host but \(sharedBy.sorted()) share it")
            }
            let cap = PreemptionPropertyTests.capacity[host]!
            if !used.fits(in: cap) { out.append("\(used) used of \(cap)") }
            return out
        }

        /// Whether keeping `p` at `t` cannot fit beside the leases holding then and `others`.
        func needs(_ p: OPreemptible, at t: Int64, others: [OPreemptible]) -> Bool {
            var used = p.size
            for o in others where o.host == p.host { used = used + o.size }
            for l in leases.values where l.holds(at: t) {
                for h in l.holds[p.host] ?? [] {
                    switch h {
                    case .whole: return true
                    case .slice(let s):
                        if let ps = p.slice, ps.gpu == s.gpu, ps.mask & s.mask != 0 || (ps.me && s.me) { return true }
                    case .instances(let size): used = used + size
                    }
                }
            }
            return !used.fits(in: PreemptionPropertyTests.capacity[p.host]!)
        }

        /// Applies the events committed since the last call and checks (a), (b) and (d) on them;
        /// returns the `preemption.scheduled` events, for (c) once the step's results are in.
        mutating func consume(_ events: [LifecycleEvent], _ ctx: String) throws -> [LifecycleEvent] {
            var scheduled: [LifecycleEvent] = []
            for e in events {
                #expect(e.seq == lastSeq + 1, "\(ctx): event seq \(e.seq) after \(lastSeq)")
                lastSeq = e.seq
                let at = e.at.seconds
                func ts(_ k: String) throws -> Int64 {
                    try #require(
                        e.data[k]?.stringValue.flatMap(Timestamp.init(rfc3339:)), "\(ctx): \(e.type) without \(k)"
                    ).seconds
                }
                switch e.type {
                case "preemption.scheduled":
                    scheduledEvents += 1
                    let id = try #require(e.preemptibleID)
                    var p = try #require(preemptibles[id], "\(ctx): scheduled an unknown preemptible \(id)")
                    let preemptAt = try ts("preempt_at"), neededAt = try ts("needed_at")
                    #expect(try ts("guaranteed_until") == p.guaranteedUntil, "\(ctx): \(id) guarantee changed")
                    #expect(
                        preemptAt >= p.guaranteedUntil,
                        "\(ctx): \(id) scheduled at \(preemptAt) before its guarantee \(p.guaranteedUntil)")
                    #expect(
                        preemptAt <= neededAt,
                        "\(ctx): \(id) preempted at \(preemptAt), after it is needed at \(neededAt)")
                    #expect(
                        preemptAt == max(neededAt - PreemptionPropertyTests.notice, p.guaranteedUntil, at),
                        "\(ctx): \(id) at \(preemptAt) breaks the notice rule (needed \(neededAt), guaranteed \(p.guaranteedUntil), now \(at))"
                    )
                    if let old = p.preemptAt {
                        #expect(preemptAt < old, "\(ctx): \(id) moved from \(old) to \(preemptAt): only earlier")
                    }
                    #expect(p.endedAt == nil, "\(ctx): \(id) scheduled after it ended")
                    p.preemptAt = preemptAt
                    p.neededAt = neededAt
                    preemptibles[id] = p
                    scheduled.append(e)
                case "preemption.executed":
                    executedEvents += 1
                    let id = try #require(e.preemptibleID)
                    var p = try #require(preemptibles[id])
                    #expect(
                        at >= p.guaranteedUntil,
                        "\(ctx): \(id) preempted at \(at) before its guarantee \(p.guaranteedUntil)")
                    #expect(
                        p.preemptAt == at,
                        "\(ctx): \(id) preempted at \(at), announced for \(String(describing: p.preemptAt))")
                    #expect(p.endedAt == nil, "\(ctx): \(id) preempted after it ended")
                    p.endedAt = at
                    p.preempted = true
                    preemptibles[id] = p
                case "preemptible.ended":
                    let id = try #require(e.preemptibleID)
                    var p = try #require(preemptibles[id])
                    if e.data["reason"]?.stringValue == "deleted" {
                        #expect(p.endedAt == nil, "\(ctx): \(id) deleted after it ended")
                        p.endedAt = at
                        p.deleted = true
                        preemptibles[id] = p
                    } else {
                        #expect(
                            p.preempted && p.endedAt == at, "\(ctx): \(id) ended (\(e.data)) without its preemption")
                    }
                case "lease.started":
                    leaseStarts += 1
                    let id = try #require(e.leaseID)
                    let l = try #require(leases[id], "\(ctx): unknown lease \(id) started")
                    #expect(l.start == at, "\(ctx): lease \(id) started at \(at), planned for \(l.start)")
                    // (b) nothing still running is in its way, on any host it holds.
                    let running = preemptibles.values.filter { $0.running(at: at) }
                    for host in l.holds.keys.sorted() {
                        let c = conflicts(host: host, at: at, preemptibles: running)
                        #expect(
                            c.isEmpty, "\(ctx): lease \(id) starts at \(at) on \(host) over running preemptibles: \(c)")
                    }
                case "lease.deleted":
                    let id = try #require(e.leaseID)
                    if var l = leases[id] {
                        // Before its start it never held anything; once active, it held until now.
                        l.end = min(l.end, max(at, l.start))
                        leases[id] = l.end > l.start ? l : nil
                    }
                default:
                    break
                }
            }
            return scheduled
        }

        /// (c): each preemption decided in this step is needed at its `needed_at`.
        func checkNeeded(_ scheduled: [LifecycleEvent], _ ctx: String) throws {
            for e in scheduled {
                let id = try #require(e.preemptibleID)
                let p = try #require(preemptibles[id])
                let t = try #require(e.data["needed_at"]?.stringValue.flatMap(Timestamp.init(rfc3339:))).seconds
                let leaseID = try #require(e.data["lease_id"]?.stringValue)
                let l = leases[leaseID]
                #expect(
                    l.map { $0.holds(at: t) && $0.holds[p.host] != nil } == true,
                    "\(ctx): \(id) needed at \(t) by lease \(leaseID), which holds nothing on \(p.host) then")
                func neededAt(_ t: Int64) -> Bool {
                    needs(p, at: t, others: preemptibles.values.filter { $0.id != id && $0.planned(at: t) })
                }
                // Only when needed: from its needed_at on, at some instant a reservation begins to
                // hold capacity, the host cannot hold it beside the rest.
                var instants: Set<Int64> = [t]
                for l in leases.values where l.holds[p.host] != nil && l.start > t { instants.insert(l.start) }
                let firstNeed = instants.sorted().first(where: neededAt)
                #expect(
                    firstNeed != nil,
                    "\(ctx): \(id) on \(p.host) scheduled for \(e.data["preempt_at"]?.stringValue ?? "?") though it is never needed\n\(dump(host: p.host, scheduled))"
                )
                // Strictly, it is needed at its own needed_at: a later instant's victim, preempted
                // notice seconds before that instant, may already make room at an earlier one, and the
                // planner must then not take another victim there (nor name the wrong instant and lease).
                #expect(
                    firstNeed == t,
                    "\(ctx): \(id) on \(p.host) scheduled for \(e.data["preempt_at"]?.stringValue ?? "?") as needed at \(t - epoch.seconds) by \(leaseID.prefix(8)), but first needed at \(firstNeed.map { "\($0 - epoch.seconds)" } ?? "-")\n\(dump(host: p.host, scheduled))"
                )
            }
        }

        /// The state of one host, for failure messages.
        func dump(host: String, _ scheduled: [LifecycleEvent]) -> String {
            var lines: [String] = []
            for l in leases.values.sorted(by: { $0.start < $1.start }) where l.holds[host] != nil {
                lines.append(
                    "  lease \(l.id.prefix(8)) [\(l.start - epoch.seconds), \(l.end - epoch.seconds)) \(l.holds[host]!)"
                )
            }
            for p in preemptibles.values.sorted(by: { $0.createdAt < $1.createdAt }) where p.host == host {
                lines.append(
                    "  preemptible \(p.id.prefix(8)) \(p.size) \(p.slice.map { "\($0)" } ?? "") created \(p.createdAt - epoch.seconds) guaranteed \(p.guaranteedUntil - epoch.seconds) preempt_at \(p.preemptAt.map { "\($0 - epoch.seconds)" } ?? "-") needed \(p.neededAt.map { "\($0 - epoch.seconds)" } ?? "-") ended \(p.endedAt.map { "\($0 - epoch.seconds)" } ?? "-")"
                )
            }
            for e in scheduled {
                lines.append(
                    "  scheduled \(e.preemptibleID?.prefix(8) ?? "") at \(e.at.seconds - epoch.seconds): \(e.data.filter { ["preempt_at", "needed_at", "lease_id"].contains($0.key) })"
                )
            }
            return lines.joined(separator: "\n")
        }

        /// Hosts nothing holds at any instant of `window`: no lease, no preemptible that may still run then.
        func freeHosts(_ window: Interval) -> Int {
            PreemptionPropertyTests.capacity.keys.filter { host in
                !leases.values.contains { $0.holds[host] != nil && $0.start < window.end && window.start < $0.end }
                    && !preemptibles.values.contains {
                        $0.host == host && $0.createdAt < window.end
                            && min($0.endedAt ?? .max, $0.preemptAt ?? .max) > window.start
                    }
            }.count
        }

        /// (e): from now on, leases and preemptibles not yet due for preemption fit everywhere.
        func checkFuture(now: Int64, _ ctx: String) {
            for host in PreemptionPropertyTests.capacity.keys.sorted() {
                var instants: Set<Int64> = [now]
                for l in leases.values where l.holds[host] != nil && l.start > now { instants.insert(l.start) }
                for t in instants.sorted() {
                    let c = conflicts(host: host, at: t, preemptibles: preemptibles.values.filter { $0.planned(at: t) })
                    #expect(c.isEmpty, "\(ctx): \(host) at \(t) (now \(now)): \(c)")
                }
            }
        }

        /// (d) and the statuses: what `preemptible.list` says agrees with the events.
        func checkListed(_ items: [JSON], now: Int64, _ ctx: String) throws {
            #expect(items.count == preemptibles.count, "\(ctx): \(items.count) listed, \(preemptibles.count) created")
            for item in items {
                let id = try #require(item["id"]?.stringValue)
                let p = try #require(preemptibles[id], "\(ctx): unknown preemptible \(id) listed")
                func ts(_ k: String) -> Int64? { item[k]?.stringValue.flatMap(Timestamp.init(rfc3339:))?.seconds }
                let status = item["status"]?.stringValue
                let expected =
                    p.deleted ? "ended" : p.preempted ? "preempted" : p.preemptAt != nil ? "preempting" : "running"
                #expect(status == expected, "\(ctx): \(id) is \(status ?? "?"), events say \(expected)")
                if !p.deleted {
                    #expect(
                        ts("preempt_at") == p.preemptAt,
                        "\(ctx): \(id) preempt_at \(String(describing: ts("preempt_at"))) vs \(String(describing: p.preemptAt))"
                    )
                    #expect(ts("needed_at") == p.neededAt, "\(ctx): \(id) needed_at")
                }
                if let at = ts("preempt_at"), let needed = ts("needed_at") {
                    #expect(at <= needed, "\(ctx): \(id) preempt_at \(at) after needed_at \(needed)")
                    #expect(
                        at >= p.guaranteedUntil,
                        "\(ctx): \(id) preempt_at \(at) before guaranteed_until \(p.guaranteedUntil)")
                }
                if status == "preempting" {
                    #expect(ts("preempt_at").map { $0 > now } == true, "\(ctx): \(id) overdue preemption")
                }
                if status == "preempted" { #expect(ts("ended_at") == p.preemptAt, "\(ctx): \(id) ended_at") }
            }
        }
    }

    // MARK: - Driving

    static func listPreemptibles(_ s: Scheduler) async throws -> [JSON] {
        var out: [JSON] = []
        var cursor: JSON = .null
        repeat {
            var params: [String: JSON] = ["limit": 1000]
            if !cursor.isNull { params["cursor"] = cursor }
            let page = try await s.call(.preemptibleList, .object(params))
            out += page["items"]?.arrayValue ?? []
            cursor = page["next_cursor"] ?? .null
        } while !cursor.isNull
        return out
    }

    static func listLeases(_ s: Scheduler) async throws -> [JSON] {
        var out: [JSON] = []
        var cursor: JSON = .null
        repeat {
            var params: [String: JSON] = ["limit": 1000]
            if !cursor.isNull { params["cursor"] = cursor }
            let page = try await s.call(.leaseList, .object(params))
            out += page["items"]?.arrayValue ?? []
            cursor = page["next_cursor"] ?? .null
        } while !cursor.isNull
        return out
    }

    static func attempt(_ s: Scheduler, _ method: RPCMethod, _ params: JSON) async -> Result<JSON, BerthError> {
        do {
            return .success(try await s.call(method, params))
        } catch {
            return .failure(error)
        }
    }

    static func newEvents(_ store: BerthStore, after seq: Int64) throws -> [LifecycleEvent] {
        var out: [LifecycleEvent] = []
        var after = seq
        while true {
            let page = try store.events(afterSeq: after, limit: 1000, types: [])
            out += page
            guard page.count == 1000, let last = page.last else { return out }
            after = last.seq
        }
    }

    static func randomRequest(_ rng: inout SplitMix64) -> JSON {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<3:
            return ["kind": "host", "count": .int(Int.random(in: 0..<4, using: &rng) == 0 ? 2 : 1)]
        case 3..<6:
            return [
                "kind": "gpu", "profile": .string(leaseProfiles[Int.random(in: 0..<leaseProfiles.count, using: &rng)]),
                "count": .int(Int64.random(in: 1...2, using: &rng)),
            ]
        default:
            var o: [String: JSON] = [
                "kind": "instance", "vcpus": .int(Int64.random(in: 2...12, using: &rng)),
                "memory_mb": .int(1024 * Int64.random(in: 1...12, using: &rng)),
                "disk_gb": .int(10 * Int64.random(in: 1...5, using: &rng)),
                "count": .int(Int64.random(in: 1...3, using: &rng)),
            ]
            if Int.random(in: 0..<6, using: &rng) == 0 {
                o["gpu_profile"] = .string(["1g.5gb", "2g.10gb"][Int.random(in: 0..<2, using: &rng)])
            }
            return .object(o)
        }
    }

    static func randomPreemptible(_ rng: inout SplitMix64) -> JSON {
        var o: [String: JSON] = [
            "project_id": "slurm", "vcpus": .int(Int64.random(in: 1...8, using: &rng)),
            "memory_mb": .int(1024 * Int64.random(in: 1...8, using: &rng)),
            "disk_gb": .int(10 * Int64.random(in: 1...5, using: &rng)),
        ]
        if Int.random(in: 0..<10, using: &rng) < 3 {
            o["gpu_profile"] = .string(preemptibleProfiles[Int.random(in: 0..<preemptibleProfiles.count, using: &rng)])
        }
        if Int.random(in: 0..<4, using: &rng) != 0 {
            o["min_lifetime_s"] = .int([600, 1200, 1800, 3600, 7200][Int.random(in: 0..<5, using: &rng)])
        }
        return .object(o)
    }

    /// `BERTH_PREEMPT_SEEDS=first-last` (and `BERTH_PREEMPT_STEPS`) run a longer exploration.
    static let seeds: [UInt64] = {
        if let v = getenv("BERTH_PREEMPT_SEEDS").map({ String(cString: $0) }) {
            let parts = v.split(separator: "-").compactMap { UInt64($0) }
            if parts.count == 2, parts[0] <= parts[1] { return Array(parts[0]...parts[1]) }
            if parts.count == 1 { return parts }
        }
        return Array(101...110)
    }()
    static let steps = getenv("BERTH_PREEMPT_STEPS").flatMap { Int(String(cString: $0)) } ?? 400

    @Test(arguments: seeds)
    func preemptionInvariantsHold(seed: UInt64) async throws {
        let dir = temporaryDirectory()
        var (s, store) = try Self.makeScheduler(dir)
        try await Self.addInventory(s)
        var rng = SplitMix64(seed: seed)
        var oracle = Oracle()
        _ = try oracle.consume(try Self.newEvents(store, after: 0), "seed \(seed) setup")
        var now = epoch.seconds
        var created = 0, leasesCreated = 0, pendingAtRestart = 0, avoidableChecked = 0
        var pendingIDs: [String] = []
        var restarted = false

        for step in 0..<Self.steps {
            let ctx = "seed \(seed) step \(step)"
            // Restart once, past the middle, as soon as a preemption is pending.
            if !restarted && step >= Self.steps / 2
                && (oracle.preemptibles.values.contains { $0.preemptAt != nil && $0.endedAt == nil }
                    || step == Self.steps - 20)
            {
                restarted = true
                // Restart on the same store: everything acknowledged is back, pending preemptions included.
                let ps = try await Self.listPreemptibles(s), ls = try await Self.listLeases(s)
                (s, store) = try Self.makeScheduler(dir)
                #expect(try await Self.listPreemptibles(s) == ps, "\(ctx): preemptibles changed across the restart")
                #expect(try await Self.listLeases(s) == ls, "\(ctx): leases changed across the restart")
                #expect(try await s.call(.clockNow, nil)["now"]?.stringValue == Timestamp(seconds: now).rfc3339)
                pendingIDs = oracle.preemptibles.values.filter { $0.preemptAt != nil && $0.endedAt == nil }.map(\.id)
                pendingAtRestart += pendingIDs.count
            }
            let live = oracle.preemptibles.values.filter { $0.endedAt == nil }.sorted { $0.order < $1.order }.map(\.id)
            let leaseIDs = oracle.leases.values.filter { $0.end > now }.sorted { $0.order < $1.order }.map(\.id)
            let op = Int.random(in: 0..<100, using: &rng)
            var createdNow: String? = nil
            if op < 25 {
                switch await Self.attempt(s, .preemptibleCreate, Self.randomPreemptible(&rng)) {
                case .success(let r):
                    try oracle.record(preemptible: r)
                    createdNow = r["id"]?.stringValue
                    created += 1
                case .failure(let error):
                    #expect(error.code == .noCapacity, "\(ctx): \(error)")
                }
            } else if op < 32 && !live.isEmpty {
                let id = live[Int.random(in: 0..<live.count, using: &rng)]
                _ = try await s.call(.preemptibleDelete, ["id": .string(id)])
            } else if op < 62 {
                let start = now + 300 * Int64.random(in: 0..<30, using: &rng)
                let end = start + 1800 * Int64.random(in: 1...6, using: &rng)
                let n = Int.random(in: 0..<4, using: &rng) == 0 ? 2 : 1
                let reservations = (0..<n).map { _ in Self.randomRequest(&rng) }
                let params: JSON = [
                    "name": "l", "project_id": "p", "start": .string(Timestamp(seconds: start).rfc3339),
                    "end": .string(Timestamp(seconds: end).rfc3339), "reservations": .array(reservations),
                ]
                // (f) Whole hosts are taken from free ones before anybody is preempted.
                var wholeHosts: Int? = 0
                for r in reservations {
                    if r["kind"] == "host", let c = r["count"]?.intValue {
                        wholeHosts! += Int(c)
                    } else {
                        wholeHosts = nil
                        break
                    }
                }
                let avoidable = wholeHosts.map { $0 <= oracle.freeHosts(Interval(start: start, end: end)) } ?? false
                let seqBefore = oracle.lastSeq
                switch await Self.attempt(s, .leaseCreate, params) {
                case .success(let r):
                    try oracle.record(lease: r)
                    leasesCreated += 1
                    if avoidable {
                        avoidableChecked += 1
                        let preempting = try Self.newEvents(store, after: seqBefore).filter {
                            $0.type == "preemption.scheduled"
                        }
                        #expect(
                            preempting.isEmpty,
                            "\(ctx): \(wholeHosts!) whole hosts were free, yet \(preempting.count) preemptions were scheduled"
                        )
                    }
                case .failure(let error):
                    #expect(error.code == .noCapacity, "\(ctx): \(error)")
                }
            } else if op < 72 && !leaseIDs.isEmpty {
                let id = leaseIDs[Int.random(in: 0..<leaseIDs.count, using: &rng)]
                let l = oracle.leases[id]!
                var params: [String: JSON] = ["id": .string(id)]
                if l.start > now && Bool.random(using: &rng) {
                    let start = now + 300 * Int64.random(in: 0..<30, using: &rng)
                    params["start"] = .string(Timestamp(seconds: start).rfc3339)
                    params["end"] = .string(
                        Timestamp(seconds: start + 1800 * Int64.random(in: 1...6, using: &rng)).rfc3339)
                } else {
                    params["end"] = .string(
                        Timestamp(seconds: max(l.start, now) + 1800 * Int64.random(in: 1...6, using: &rng)).rfc3339)
                }
                switch await Self.attempt(s, .leaseUpdate, .object(params)) {
                case .success(let r):
                    try oracle.record(lease: r)
                case .failure(let error):
                    #expect(error.code == .noCapacity, "\(ctx): \(error)")
                }
            } else if op < 78 && !leaseIDs.isEmpty {
                _ = try await s.call(
                    .leaseDelete, ["id": .string(leaseIDs[Int.random(in: 0..<leaseIDs.count, using: &rng)])])
            } else {
                let by = 300 * Int64.random(in: 1...6, using: &rng)
                let r = try await s.call(.clockAdvance, ["seconds": .int(by)])
                now += by
                #expect(r["now"]?.stringValue == Timestamp(seconds: now).rfc3339)
            }
            let alreadyScheduled = Set(oracle.preemptibles.values.filter { $0.preemptAt != nil }.map(\.id))
            let scheduled = try oracle.consume(try Self.newEvents(store, after: oracle.lastSeq), ctx)
            if let id = createdNow {
                // (g) A preemptible created in the way of a planned reservation is the one to go: it
                // never makes another go (one already going may only be moved earlier).
                for e in scheduled where e.preemptibleID != id {
                    #expect(
                        alreadyScheduled.contains(e.preemptibleID ?? ""),
                        "\(ctx): creating \(id) scheduled the preemption of \(e.preemptibleID ?? "?")")
                }
            }
            try oracle.checkNeeded(scheduled, ctx)
            oracle.checkFuture(now: now, ctx)
            try oracle.checkListed(try await Self.listPreemptibles(s), now: now, ctx)
        }

        // Run out the clock: every announced preemption fires at its time, those pending at the
        // restart included.
        _ = try await s.call(.clockAdvance, ["seconds": .int(3 * 86_400)])
        now += 3 * 86_400
        _ = try oracle.consume(try Self.newEvents(store, after: oracle.lastSeq), "seed \(seed) end")
        try oracle.checkListed(try await Self.listPreemptibles(s), now: now, "seed \(seed) end")
        for p in oracle.preemptibles.values where p.preemptAt != nil && !p.deleted {
            #expect(p.preempted, "seed \(seed): \(p.id) announced for \(p.preemptAt!) never preempted")
        }
        #expect(restarted)
        for id in pendingIDs {
            let p = oracle.preemptibles[id]!
            #expect(p.preempted || p.deleted, "seed \(seed): \(id), pending at the restart, did not fire")
        }
        // The trace must exercise what it checks.
        #expect(created >= 20, "seed \(seed): only \(created) preemptibles created")
        #expect(leasesCreated >= 30, "seed \(seed): only \(leasesCreated) leases created")
        #expect(oracle.scheduledEvents >= 5, "seed \(seed): only \(oracle.scheduledEvents) preemptions scheduled")
        #expect(oracle.executedEvents >= 3, "seed \(seed): only \(oracle.executedEvents) preemptions executed")
        if getenv("BERTH_PREEMPT_SEEDS") != nil {
            print(
                "seed \(seed): \(created) preemptibles, \(leasesCreated) leases, \(oracle.leaseStarts) starts, \(oracle.scheduledEvents) scheduled, \(oracle.executedEvents) executed, \(pendingAtRestart) pending at restart, \(avoidableChecked) whole-host leases checked for avoidable preemptions"
            )
        }
    }

    // MARK: - Scenarios

    /// A pending preemption survives a restart between its scheduling and its execution, and the
    /// reservation then starts on a free host.
    @Test func aPendingPreemptionSurvivesARestartAndFires() async throws {
        let dir = temporaryDirectory()
        var (s, store) = try Self.makeScheduler(dir)
        _ = try await s.call(.hostCreate, ["name": "c0", "vcpus": 16, "memory_mb": 32768, "disk_gb": 200])
        let p = try await s.call(
            .preemptibleCreate,
            ["project_id": "slurm", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10, "min_lifetime_s": 600])
        let id = try #require(p["id"]?.stringValue)
        #expect(p["status"] == "running")
        #expect(p["guaranteed_until"]?.stringValue == (epoch + 600).rfc3339)
        let lease = try await s.call(
            .leaseCreate,
            [
                "name": "l", "project_id": "p", "start": .string((epoch + 3600).rfc3339),
                "end": .string((epoch + 7200).rfc3339),
                "reservations": [["kind": "host", "count": 1]],
            ])
        let scheduled = try await s.call(.preemptibleGet, ["id": .string(id)])
        #expect(scheduled["status"] == "preempting")
        #expect(scheduled["preempt_at"]?.stringValue == (epoch + 3000).rfc3339)
        #expect(scheduled["needed_by_lease_id"] == lease["id"])
        #expect(
            try await s.call(.preemptibleHorizon, ["host": "c0"])["preempt_at"]?.stringValue == (epoch + 3000).rfc3339)
        _ = try await s.call(.clockAdvance, ["seconds": 2999])

        (s, store) = try Self.makeScheduler(dir)
        #expect(try await s.call(.preemptibleGet, ["id": .string(id)]) == scheduled)
        _ = try await s.call(.clockAdvance, ["seconds": 1])
        let done = try await s.call(.preemptibleGet, ["id": .string(id)])
        #expect(done["status"] == "preempted")
        #expect(done["ended_at"]?.stringValue == (epoch + 3000).rfc3339)
        _ = try await s.call(.clockAdvance, ["seconds": 600])
        #expect(try await s.call(.leaseGet, ["id": lease["id"]!])["status"] == "active")
        let types = try store.events(afterSeq: 0, limit: 100, types: ["preemption.*", "lease.started"]).map(\.type)
        #expect(types == ["preemption.scheduled", "preemption.executed", "lease.started"])
    }

    /// The planner's instant-by-instant victim choice, end to end: creating L1 makes both L1's
    /// start and L2's start short; the victim chosen for L2 goes before L1 starts, which makes the
    /// one chosen for L1 needless (PreemptionPlannerTests.aLaterInstantsVictimCanMakeAnEarlierOneNeedless).
    @Test func noPreemptibleIsPreemptedForNothing() async throws {
        let (s, store) = try Self.makeScheduler(temporaryDirectory())
        _ = try await s.call(.hostCreate, ["name": "c0", "vcpus": 16, "memory_mb": 16000, "disk_gb": 100])
        let a = try await s.call(
            .preemptibleCreate,
            ["project_id": "slurm", "vcpus": 4, "memory_mb": 4000, "disk_gb": 10, "min_lifetime_s": 600])
        let b = try await s.call(
            .preemptibleCreate,
            ["project_id": "slurm", "vcpus": 1, "memory_mb": 4000, "disk_gb": 10, "min_lifetime_s": 600])
        func lease(_ start: Int64, _ vcpus: Int64, _ memory: Int64) async throws -> JSON {
            try await s.call(
                .leaseCreate,
                [
                    "name": "l", "project_id": "p", "start": .string((epoch + start).rfc3339),
                    "end": .string((epoch + 4000).rfc3339),
                    "reservations": [
                        [
                            "kind": "instance", "vcpus": .int(vcpus), "memory_mb": .int(memory), "disk_gb": 10,
                            "count": 1,
                        ]
                    ],
                ])
        }
        _ = try await lease(2300, 11, 100)  // 11 + 4 + 1 = 16 vcpus: fits, nobody goes
        #expect(try store.events(afterSeq: 0, limit: 100, types: ["preemption.scheduled"]).isEmpty)
        _ = try await lease(2000, 2, 10_000)  // short of memory from 2000, of vcpus from 2300
        let scheduled = Set(
            try store.events(afterSeq: 0, limit: 100, types: ["preemption.scheduled"]).compactMap(\.preemptibleID))
        #expect(scheduled.contains(a["id"]!.stringValue!), "a alone makes room at both instants")
        let bStatus = try await s.call(.preemptibleGet, ["id": b["id"]!])["status"]
        #expect(scheduled == [a["id"]!.stringValue!])
        #expect(bStatus == "running")
    }

    /// A reservation that could only go over a guaranteed preemptible is refused with the earliest
    /// start that fits: the end of the guarantee.
    @Test func aGuaranteedPreemptibleTurnsAReservationAway() async throws {
        let (s, _) = try Self.makeScheduler(temporaryDirectory())
        _ = try await s.call(.hostCreate, ["name": "c0", "vcpus": 16, "memory_mb": 32768, "disk_gb": 200])
        let p = try await s.call(
            .preemptibleCreate,
            ["project_id": "slurm", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10, "min_lifetime_s": 7200])
        func whole(_ start: Timestamp) async -> Result<JSON, BerthError> {
            do {
                return .success(
                    try await s.call(
                        .leaseCreate,
                        [
                            "name": "l", "project_id": "p", "start": .string(start.rfc3339),
                            "end": .string((start + 3600).rfc3339),
                            "reservations": [["kind": "host", "count": 1]],
                        ]))
            } catch { return .failure(error) }
        }
        guard case .failure(let e) = await whole(epoch + 3600) else {
            Issue.record("a reservation over a guaranteed preemptible was accepted")
            return
        }
        #expect(e.code == .noCapacity)
        #expect(e.data["earliest_start"]?.stringValue == (epoch + 7200).rfc3339)
        guard case .success = await whole(epoch + 7200) else {
            Issue.record("the earliest start offered was refused")
            return
        }
        let after = try await s.call(.preemptibleGet, ["id": p["id"]!])
        #expect(
            after["preempt_at"]?.stringValue == (epoch + 7200).rfc3339,
            "never before its guarantee, even within the notice")
        // Instance capacity beside it is given without preempting anybody.
        let (s2, _) = try Self.makeScheduler(temporaryDirectory())
        _ = try await s2.call(.hostCreate, ["name": "c0", "vcpus": 16, "memory_mb": 32768, "disk_gb": 200])
        let q = try await s2.call(
            .preemptibleCreate,
            ["project_id": "slurm", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10, "min_lifetime_s": 600])
        _ = try await s2.call(
            .leaseCreate,
            [
                "name": "l", "project_id": "p", "start": .string((epoch + 3600).rfc3339),
                "end": .string((epoch + 7200).rfc3339),
                "reservations": [["kind": "instance", "vcpus": 12, "memory_mb": 4096, "disk_gb": 10, "count": 1]],
            ])
        #expect(try await s2.call(.preemptibleGet, ["id": q["id"]!])["status"] == "running")
    }
}
