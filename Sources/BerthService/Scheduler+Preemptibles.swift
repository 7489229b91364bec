import BerthCore
import BerthJSON

extension Scheduler {
    /// Preemption hook runs are queued only while a hook is configured (follows reloads).
    public func setHookConfigured(_ on: Bool) { hookConfigured = on }

    // MARK: - Reservations over preemptibles

    /// Places a lease's requests so that, when possible, no preemptible is disturbed: first with
    /// preemptibles counted for as long as they run; only if that fails, with them counted only
    /// until their guarantees end (victims are then chosen by `planPreemptions`). Returns the
    /// planner that decided, for `earliest_start` searches.
    func placeLease(
        _ requests: [ReservationRequest], window: Interval, keep: [[Allocation]] = [], calendar cal: LeaseCalendar
    ) -> (Result<[[Allocation]], LeasePlanner.Failure>, LeasePlanner) {
        let strict = LeasePlanner(inventory: inventory, calendar: cal, models: models)
        let first = strict.place(requests, window: window, keep: keep)
        guard case .failure(let f) = first, case .busy = f, !livePreemptibles.isEmpty else { return (first, strict) }
        var lenientCalendar = cal
        lenientCalendar.preemptibleView = .guaranteedOnly
        let lenient = LeasePlanner(inventory: inventory, calendar: lenientCalendar, models: models)
        return (lenient.place(requests, window: window, keep: keep), lenient)
    }

    /// Chooses and schedules the preemptions that `lease` (replacing `replacing`, on updates) and
    /// the preemptibles in `c` make necessary on the hosts they touch, adding them to `c`.
    /// Refuses (-32002) a placement that could only fit by breaking a guarantee.
    func planPreemptions(
        hosts touched: Set<String>, lease: Lease?, replacing: String?, now: Timestamp, preferred: Set<String> = [],
        into c: inout Change
    ) throws(BerthError) {
        let pending = Dictionary(c.preemptibleUpdates.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        for host in touched.sorted() {
            var ids = livePreemptibles[host] ?? []
            for p in c.preemptibleUpdates where p.host == host { if p.status.isLive { ids.insert(p.id) } else { ids.remove(p.id) } }
            guard !ids.isEmpty, let h = hosts[host] else { continue }
            let live = ids.compactMap { pending[$0] ?? preemptibles[$0] }.filter(\.status.isLive)
            var holders: [PreemptionPlanner.Holder] = calendar.reservationHolders(host: host, from: now.seconds)
                .filter { $0.entry.leaseID != replacing && $0.entry.leaseID != lease?.id }
                .map { PreemptionPlanner.Holder(interval: $0.interval, leaseID: $0.entry.leaseID, usage: $0.entry.usage) }
            if let lease, lease.status.occupiesCalendar, lease.start < lease.end {
                for r in lease.reservations {
                    for a in r.allocations where a.host == host {
                        holders.append(
                            PreemptionPlanner.Holder(
                                interval: lease.window, leaseID: lease.id,
                                usage: LeaseCalendar.entry(lease: lease, reservation: r, allocation: a).usage))
                    }
                }
            }
            let plan = PreemptionPlanner.plan(
                capacity: InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB), holders: holders,
                preemptibles: live.map(PreemptionPlanner.Holding.init), now: now.seconds,
                notice: policy.preemption.notice, preferred: preferred)
            if let t = plan.overcommitted.first {
                logger.error(
                    "placement would need a preemptible before its guarantee; refused",
                    metadata: ["host": "\(host)", "at": "\(Timestamp(seconds: t))"])
                throw BerthError(
                    .noCapacity,
                    "host \(host) cannot hold this at \(Timestamp(seconds: t)) without preempting an instance before its guaranteed time")
            }
            for d in plan.decisions {
                guard var p = pending[d.preemptibleID] ?? preemptibles[d.preemptibleID] else { continue }
                p.status = .preempting
                p.preemptAt = Timestamp(seconds: d.preemptAt)
                p.neededAt = Timestamp(seconds: d.neededAt)
                p.neededBy = d.neededBy
                p.updatedAt = now
                c.preemptibleUpdates.removeAll { $0.id == p.id }
                c.preemptibleUpdates.append(p)
                let data: [String: JSON] = [
                    "preempt_at": .string(Timestamp(seconds: d.preemptAt).rfc3339),
                    "needed_at": .string(Timestamp(seconds: d.neededAt).rfc3339),
                    "needed_until": .string(Timestamp(seconds: d.neededUntil).rfc3339),
                    "guaranteed_until": .string(p.guaranteedUntil.rfc3339), "lease_id": .string(d.neededBy),
                    "slurm_node": JSON(p.slurmNode),
                ]
                event("preemption.scheduled", at: now, preemptible: p, data: data, into: &c)
                hookAction("preemption.scheduled", p, data: data, at: now, into: &c)
            }
        }
    }

    /// Queues a run of the configured preemption hook (delivered by the hook worker, retried).
    func hookAction(_ type: String, _ p: Preemptible, data: [String: JSON], at: Timestamp, into c: inout Change) {
        guard hookConfigured else { return }
        var payload = data
        payload["event"] = .string(type)
        payload["preemptible_id"] = .string(p.id)
        payload["project_id"] = .string(p.projectID)
        payload["host"] = .string(p.host)
        payload["slurm_node"] = JSON(p.slurmNode)
        if let e = c.mutation.events.last(where: { $0.type == type && $0.preemptibleID == p.id }) {
            payload["event_json"] = .string(e.json.serialized())
        }
        c.mutation.actions.append(
            OutboxAction(
                id: UUIDString.random(), kind: "hook.preemption", target: "preemptible/\(p.id)", leaseID: nil, createdAt: at,
                payload: payload))
    }

    func preemptibleAction(_ kind: String, _ p: Preemptible, at: Timestamp, extra: [String: JSON] = [:], into c: inout Change) {
        var payload: [String: JSON] = [
            "preemptible_id": .string(p.id), "project_id": .string(p.projectID), "host": .string(p.host),
            "vcpus": .int(p.size.vcpus), "memory_mb": .int(p.size.memoryMB), "disk_gb": .int(p.size.diskGB),
            "gpu_profile": JSON(p.gpuProfile), "slurm_node": JSON(p.slurmNode),
        ]
        if let g = p.gpu, let s = p.slot {
            payload["gpu"] = .int(Int64(g))
            payload["slot"] = .int(Int64(s))
        }
        if let server = p.server { payload["server"] = server }
        for (k, v) in extra { payload[k] = v }
        c.mutation.actions.append(
            OutboxAction(
                id: UUIDString.random(), kind: kind, target: "preemptible/\(p.id)", leaseID: nil, createdAt: at,
                payload: payload))
    }

    /// A scheduled preemption comes due: the instance stops holding capacity now.
    func firePreemption(_ t: LeaseTimer) throws(BerthError) {
        guard var p = preemptibles[t.leaseID], p.status == .preempting, p.preemptAt == t.at else { return }
        var c = Change()
        p.status = .preempted
        p.endedAt = t.at
        p.updatedAt = t.at
        c.preemptibleUpdates = [p]
        let data: [String: JSON] = [
            "preempt_at": .string(t.at.rfc3339), "needed_at": p.neededAt.map { .string($0.rfc3339) } ?? .null,
            "lease_id": JSON(p.neededBy), "slurm_node": JSON(p.slurmNode),
            "action": .string(policy.preemption.action.rawValue),
            "needed_until": p.neededBy.flatMap { leases[$0] }.map { .string($0.end.rfc3339) } ?? .null,
        ]
        event("preemption.executed", at: t.at, preemptible: p, data: data, into: &c)
        event("preemptible.ended", at: t.at, preemptible: p, data: ["reason": "preempted", "slurm_node": JSON(p.slurmNode)], into: &c)
        preemptibleAction("preemptible.preempt", p, at: t.at, extra: ["mode": .string(policy.preemption.action.rawValue)], into: &c)
        hookAction("preemption.executed", p, data: data, at: t.at, into: &c)
        try apply(c)
    }

    // MARK: - Methods

    func requirePreemptible(_ id: String) throws(BerthError) -> Preemptible {
        guard let p = preemptibles[id] else { throw .notFound("no preemptible with id '\(id)'") }
        return p
    }

    func preemptibleCreate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        var r = ParamReader(params)
        let project = r.string("project_id", required: true)
        let vcpus = r.int("vcpus", required: true, min: 1, max: 1 << 20)
        let memory = r.int("memory_mb", required: true, min: 1, max: 1 << 40)
        let disk = r.int("disk_gb", required: true, min: 0, max: 1 << 40)
        let profile = r.string("gpu_profile")
        let lifetime = r.int("min_lifetime_s", min: 1, max: 100 * 366 * 86_400)
        var server: JSON? = nil
        if let s = r.raw("server") {
            if case .object = s { server = s } else { r.fail("server", "expected an object of Nova boot fields, got \(s.typeName)") }
        }
        let node = r.string("slurm_node", maxLength: 64)
        _ = r.raw("idempotency_key")
        if let node, !Scheduler.isSlurmNodeName(node) {
            r.fail("slurm_node", "must be one Slurm node name: letters, digits, '.', '_' or '-' (got '\(node)')")
        }
        if let profile {
            do throws(BerthError) {
                _ = try models.resolve(profile: profile, gpuModel: nil, path: "")
            } catch {
                for e in error.fieldErrors { r.fail("gpu_profile", e.message) }
            }
        }
        try r.finish()
        guard let project, let vcpus, let memory, let disk else { throw .invalidParam("params", "incomplete preemptible") }
        let minLifetime = lifetime ?? policy.preemption.defaultMinLifetime
        if minLifetime > policy.preemption.maxMinLifetime {
            throw BerthError(
                .policyViolation,
                "min_lifetime_s \(minLifetime) is longer than the configured maximum of \(policy.preemption.maxMinLifetime) s",
                data: ["rule": "max_min_lifetime", "max_s": .int(policy.preemption.maxMinLifetime)])
        }
        if now + minLifetime > Timestamp.distantFuture {
            // Only a manual clock gets this close; past it a time has no RFC 3339 form.
            throw .invalidParam("min_lifetime_s", "the guarantee would end after \(Timestamp.distantFuture.rfc3339)")
        }
        if let node, let other = preemptibles.values.first(where: { $0.slurmNode == node && $0.status.isLive }) {
            throw BerthError(
                .conflict, "slurm node '\(node)' is already backed by preemptible \(other.id) (\(other.status.rawValue))",
                data: ["preemptible_id": .string(other.id)])
        }
        let size = InstanceSize(vcpus: vcpus, memoryMB: memory, diskGB: disk)
        let window = Interval(start: now.seconds, end: now.seconds + minLifetime)
        let placement: PreemptionPlanner.Placement
        switch PreemptionPlanner.backfill(
            size: size, gpuProfile: profile, window: window, hosts: sortedHosts, calendar: calendar, models: models)
        {
        case .success(let p): placement = p
        case .failure(.neverFits(let m)): throw BerthError(.noCapacity, m)
        case .failure(.busy(let m)): throw BerthError(.noCapacity, m)
        }
        var p = Preemptible(
            id: UUIDString.random(), projectID: project, size: size, gpuProfile: profile, gpu: placement.gpu,
            slot: placement.slot, sliceSize: placement.sliceSize, minLifetime: minLifetime, server: server, slurmNode: node,
            host: placement.host, createdAt: now)
        p.updatedAt = now
        var c = Change()
        c.preemptibleUpdates = [p]
        event(
            "preemptible.created", at: now, preemptible: p,
            data: ["guaranteed_until": .string(p.guaranteedUntil.rfc3339), "slurm_node": JSON(p.slurmNode)], into: &c)
        preemptibleAction("preemptible.start", p, at: now, into: &c)
        // Reservations already planned here may need its capacity after its guarantee.
        // If it is in the way, it is the one preempted (not an older one making way for it).
        try planPreemptions(hosts: [p.host], lease: nil, replacing: nil, now: now, preferred: [p.id], into: &c)
        let result = (c.preemptibleUpdates.last { $0.id == p.id } ?? p).json()
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        fireDue()
        return preemptibles[p.id]!.json()
    }

    /// One node name, not a hostlist expression (`n[1-3]`) or anything a shell would split.
    static func isSlurmNodeName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }

    func preemptibleGet(_ params: JSON?) throws(BerthError) -> JSON {
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        try r.finish()
        return try requirePreemptible(id!).json()
    }

    func preemptibleList(_ params: JSON?) throws(BerthError) -> JSON {
        var r = ParamReader(params)
        let project = r.string("project_id")
        let host = r.string("host")
        if let host, !Scheduler.validHostName(host) {
            // No host can have this name: a filter by it is a mistake, not an empty list.
            r.fail("host", "must start with a letter or digit and contain only letters, digits, '.', '_' and '-'")
        }
        let status = r.enumValue("status", PreemptibleStatus.self)
        let node = r.string("slurm_node")
        let cursor = r.string("cursor")
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        let after = CreationCursor.parse(cursor, method: "preemptible.list", into: &r)
        try r.finish()
        var items: [JSON] = []
        var next: JSON = .null
        var i = after.map { CreationCursor.index(after: $0, in: preemptibleOrder) } ?? 0
        while i < preemptibleOrder.count {
            let id = preemptibleOrder[i].1
            i += 1
            guard let p = preemptibles[id] else { continue }
            if let project, p.projectID != project { continue }
            if let host, p.host != host { continue }
            if let status, p.status != status { continue }
            if let node, p.slurmNode != node { continue }
            items.append(p.json())
            if items.count == limit {
                if i < preemptibleOrder.count { next = CreationCursor.make(p.createdAt, p.id) }
                break
            }
        }
        return ["items": .array(items), "next_cursor": next]
    }

    func preemptibleDelete(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        _ = r.raw("idempotency_key")
        try r.finish()
        var p = try requirePreemptible(id!)
        guard p.status.isLive else {
            throw .conflict("preemptible \(p.id) is already \(p.status.rawValue) (since \(p.endedAt.map { "\($0)" } ?? "?"))")
        }
        p.status = .ended
        p.endedAt = max(now, p.createdAt)
        p.updatedAt = now
        var c = Change()
        c.preemptibleUpdates = [p]
        event("preemptible.ended", at: now, preemptible: p, data: ["reason": "deleted", "slurm_node": JSON(p.slurmNode)], into: &c)
        preemptibleAction("preemptible.end", p, at: now, into: &c)
        let result = p.json()
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        return result
    }

    func preemptibleHorizon(_ params: JSON?) throws(BerthError) -> JSON {
        let now = clock.now()
        var r = ParamReader(params)
        let host = r.string("host")
        let id = r.string("id")
        if (host == nil) == (id == nil) { r.fail("params", "give exactly one of host or id") }
        try r.finish()
        if let id {
            let p = try requirePreemptible(id)
            return ["preempt_at": p.status == .ended ? .null : (p.preemptAt.map { .string($0.rfc3339) } ?? .null)]
        }
        let h = try requireHost(host!)
        return ["preempt_at": horizon(host: h.name, now: now).map { .string($0.rfc3339) } ?? .null]
    }

    /// The earliest instant something on the host may be preempted: a preemption already
    /// scheduled there, or `notice` before a reservation next holds capacity there (now, if one
    /// holds some now).
    func horizon(host: String, now: Timestamp) -> Timestamp? {
        var best: Int64? = nil
        for id in livePreemptibles[host] ?? [] {
            if let t = preemptibles[id]?.preemptAt?.seconds { best = min(best ?? t, t) }
        }
        let holders = calendar.reservationHolders(host: host, from: now.seconds)
        if let next = holders.map({ max($0.interval.start, now.seconds) }).min() {
            let t = next <= now.seconds ? now.seconds : max(now.seconds, next - policy.preemption.notice)
            best = min(best ?? t, t)
        }
        return best.map(Timestamp.init(seconds:))
    }
}
