import BerthCore
import BerthJSON

extension Scheduler {
    /// Preemption hook runs are queued only while a hook is configured (follows reloads).
    public func setHookConfigured(_ on: Bool) { hookConfigured = on }

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
                id: UUIDString.random(), kind: "hook.preemption", target: "preemptible/\(p.id)", leaseID: nil,
                createdAt: at,
                payload: payload))
    }

    func preemptibleAction(
        _ kind: String, _ p: Preemptible, at: Timestamp, extra: [String: JSON] = [:], into c: inout Change
    ) {
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
        guard var p = state.preemptibles[t.leaseID], p.status == .preempting, p.preemptAt == t.at else { return }
        var c = Change()
        p.status = .preempted
        p.endedAt = t.at
        p.updatedAt = t.at
        c.preemptibleUpdates = [p]
        let data: [String: JSON] = [
            "preempt_at": .string(t.at.rfc3339), "needed_at": p.neededAt.map { .string($0.rfc3339) } ?? .null,
            "lease_id": JSON(p.neededBy), "slurm_node": JSON(p.slurmNode),
            "action": .string(policy.preemption.action.rawValue),
            "needed_until": p.neededBy.flatMap { state.leases[$0] }.map { .string($0.end.rfc3339) } ?? .null,
        ]
        event("preemption.executed", at: t.at, preemptible: p, data: data, into: &c)
        event(
            "preemptible.ended", at: t.at, preemptible: p,
            data: ["reason": "preempted", "slurm_node": JSON(p.slurmNode)], into: &c)
        preemptibleAction(
            "preemptible.preempt", p, at: t.at, extra: ["mode": .string(policy.preemption.action.rawValue)], into: &c)
        hookAction("preemption.executed", p, data: data, at: t.at, into: &c)
        try apply(c)
    }

    func requirePreemptible(_ id: String) throws(BerthError) -> Preemptible {
        guard let p = state.preemptibles[id] else { throw .notFound("no preemptible with id '\(id)'") }
        return p
    }

    func preemptibleCreate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        let q = try PreemptibleCreateParams.parse(params, models: models)
        let (profile, node, size) = (q.gpuProfile, q.slurmNode, q.size)
        let minLifetime = q.minLifetime ?? policy.preemption.defaultMinLifetime
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
        if let node, let other = state.preemptibles.values.first(where: { $0.slurmNode == node && $0.status.isLive }) {
            throw BerthError(
                .conflict,
                "slurm node '\(node)' is already backed by preemptible \(other.id) (\(other.status.rawValue))",
                data: ["preemptible_id": .string(other.id)])
        }
        let window = Interval(start: now.seconds, end: now.seconds + minLifetime)
        let placement: PreemptionPlanner.Placement
        switch PreemptionPlanner.backfill(
            size: size, gpuProfile: profile, window: window, hosts: state.sortedHosts, calendar: state.calendar,
            models: models)
        {
        case .success(let p): placement = p
        case .failure(.neverFits(let m)): throw BerthError(.noCapacity, m)
        case .failure(.busy(let m)): throw BerthError(.noCapacity, m)
        }
        var p = Preemptible(
            id: UUIDString.random(), projectID: q.projectID, size: size, gpuProfile: profile, gpu: placement.gpu,
            slot: placement.slot, sliceSize: placement.sliceSize, minLifetime: minLifetime, server: q.server,
            slurmNode: node,
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
        return state.preemptibles[p.id]!.json()
    }

    func preemptibleGet(_ params: JSON?) throws(BerthError) -> JSON {
        try requirePreemptible(PreemptibleGetParams.parse(params).id).json()
    }

    func preemptibleList(_ params: JSON?) throws(BerthError) -> JSON {
        let q = try PreemptibleListParams.parse(params)
        let (project, host, status, node, limit) = (q.projectID, q.host, q.status, q.slurmNode, q.limit)
        var items: [JSON] = []
        var next: JSON = .null
        var i = q.after.map { CreationCursor.index(after: $0, in: state.preemptibleOrder) } ?? 0
        while i < state.preemptibleOrder.count {
            let id = state.preemptibleOrder[i].1
            i += 1
            guard let p = state.preemptibles[id] else { continue }
            if let project, p.projectID != project { continue }
            if let host, p.host != host { continue }
            if let status, p.status != status { continue }
            if let node, p.slurmNode != node { continue }
            items.append(p.json())
            if items.count == limit {
                if i < state.preemptibleOrder.count { next = CreationCursor.make(p.createdAt, p.id) }
                break
            }
        }
        return ["items": .array(items), "next_cursor": next]
    }

    func preemptibleDelete(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        var p = try requirePreemptible(PreemptibleDeleteParams.parse(params).id)
        guard p.status.isLive else {
            throw .conflict(
                "preemptible \(p.id) is already \(p.status.rawValue) (since \(p.endedAt.map { "\($0)" } ?? "?"))")
        }
        p.status = .ended
        p.endedAt = max(now, p.createdAt)
        p.updatedAt = now
        var c = Change()
        c.preemptibleUpdates = [p]
        event(
            "preemptible.ended", at: now, preemptible: p, data: ["reason": "deleted", "slurm_node": JSON(p.slurmNode)],
            into: &c)
        preemptibleAction("preemptible.end", p, at: now, into: &c)
        let result = p.json()
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        return result
    }

    func preemptibleHorizon(_ params: JSON?) throws(BerthError) -> JSON {
        let now = clock.now()
        switch try PreemptibleHorizonParams.parse(params) {
        case .preemptible(let id):
            let p = try requirePreemptible(id)
            return ["preempt_at": p.status == .ended ? .null : (p.preemptAt.map { .string($0.rfc3339) } ?? .null)]
        case .host(let host):
            let h = try requireHost(host)
            return ["preempt_at": horizon(host: h.name, now: now).map { .string($0.rfc3339) } ?? .null]
        }
    }

    /// The earliest instant something on the host may be preempted: a preemption already
    /// scheduled there, or `notice` before a reservation next holds capacity there (now, if one
    /// holds some now).
    func horizon(host: String, now: Timestamp) -> Timestamp? {
        var best: Int64? = nil
        for id in state.livePreemptibles[host] ?? [] {
            if let t = state.preemptibles[id]?.preemptAt?.seconds { best = min(best ?? t, t) }
        }
        let holders = state.calendar.reservationHolders(host: host, from: now.seconds)
        if let next = holders.map({ max($0.interval.start, now.seconds) }).min() {
            let t = next <= now.seconds ? now.seconds : max(now.seconds, next - policy.preemption.notice)
            best = min(best ?? t, t)
        }
        return best.map(Timestamp.init(seconds:))
    }
}
