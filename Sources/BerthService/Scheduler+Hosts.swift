import BerthCore
import BerthJSON
import BerthStore

extension Scheduler {
    func hostCreate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let p = try HostCreateParams.parse(params, models: models)
        let name = p.name
        if state.hosts[name] != nil { throw .conflict("a host named '\(name)' already exists") }
        let now = clock.now()
        let id = state.hostIDSeq + 1
        let host = Host(
            name: name, vcpus: p.vcpus, memoryMB: p.memoryMB, diskGB: p.diskGB, gpus: p.gpus ?? [],
            properties: p.properties ?? [:],
            state: p.state ?? .up, reservable: p.reservable ?? true, createdAt: now, updatedAt: now, id: id)
        var c = Change()
        c.mutation.hosts = [host]
        c.mutation.meta["host_id_seq"] = String(id)
        event("host.created", at: now, host: name, into: &c)
        let result = host.json
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        state.hostIDSeq = id
        state.setHost(host)
        return result
    }

    func requireHost(_ name: String) throws(BerthError) -> Host {
        guard let h = state.hosts[name] else { throw .notFound("no host named '\(name)'") }
        return h
    }

    func hostGet(_ params: JSON?) throws(BerthError) -> JSON {
        try requireHost(HostGetParams.parse(params).name).json
    }

    func hostList(_ params: JSON?) throws(BerthError) -> JSON {
        let filter = try HostListParams.parse(params).filter
        return ["items": .array(state.sortedHosts.filter { filter.matches($0) }.map(\.json)), "next_cursor": .null]
    }

    func hostUpdate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let p = try HostUpdateParams.parse(params, models: models)
        let f = p.fields
        var host = try requireHost(p.name)
        let before = host
        if let v = f.vcpus { host.vcpus = v }
        if let v = f.memoryMB { host.memoryMB = v }
        if let v = f.diskGB { host.diskGB = v }
        if let v = f.gpus { host.gpus = v }
        if let v = f.properties { host.properties = v }
        if let v = f.state { host.state = v }
        if let v = f.reservable { host.reservable = v }
        let now = clock.now()
        try checkShrink(from: before, to: host, now: now)
        host.updatedAt = now
        var c = Change()
        c.mutation.hosts = [host]
        event("host.updated", at: now, host: host.name, into: &c)
        if before.state != host.state {
            event(
                host.state == .up ? "host.up" : "host.down", at: now, host: host.name,
                data: ["state": .string(host.state.rawValue)], into: &c)
            if host.state != .up { heal(leavingHost: host, now: now, into: &c) }
        }
        let result = host.json
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        state.setHost(host)
        return result
    }

    /// What a host going down or into maintenance held, now or later, moves to other capacity that
    /// satisfies the same requests: each affected lease (in start order, each seeing the ones moved
    /// before it) is planned again over its window, keeping every allocation that is still on a
    /// schedulable host, as `lease.update` would. A lease that cannot move keeps its allocations and
    /// is marked degraded with the reason. Healing never preempts: a move that would need a
    /// preemptible's capacity counts as impossible. Preemptibles on the host end (reason
    /// `host_down`), with their `preemptible.end` actions.
    func heal(leavingHost host: Host, now: Timestamp, into c: inout Change) {
        var after = state.hosts
        after[host.name] = host
        var cal = state.calendar
        let inventory = HostInventory(hosts: after.values.sorted { $0.name < $1.name }, calendar: &cal)
        let ids = Set(
            cal.entries(
                host: host.name, overlapping: Interval(start: now.seconds, end: Timestamp.distantFuture.seconds)
            )
            .filter { !$0.payload.isPreemptible }.map(\.payload.leaseID))
        let affected = ids.compactMap { state.leases[$0] }.filter { $0.status == .pending || $0.status == .active }
            .sorted { ($0.start, $0.id) < ($1.start, $1.id) }
        for old in affected {
            cal.remove(old)
            let keep = old.reservations.map { r in r.allocations.filter { $0.host != host.name } }
            let planner = LeasePlanner(inventory: inventory, calendar: cal, models: models)
            var healed: Lease? = nil
            if case .success(let placed) = planner.place(
                old.reservations.map(\.request), window: old.window, keep: keep)
            {
                var l = old
                l.reservations = zip(old.reservations, placed).map { r, a in
                    var r = r
                    r.allocations = a
                    return r
                }
                l.degraded = false
                l.degradedReason = nil
                l.updatedAt = now
                // Same requests, so normally the same price; a move to dearer capacity the
                // project cannot pay for counts as impossible.
                if let charges = try? price(&l, now: now) {
                    c.ledgerEntries += charges
                    healed = l
                }
            }
            if let l = healed {
                cal.add(l)
                c.leaseUpdates.append(l)
                c.removedFromCalendar.append(old)
                c.addedToCalendar.append(l)
                let oldHosts = Set(old.hostNames)
                let newHosts = Set(l.hostNames)
                event(
                    "lease.updated", at: now, lease: l,
                    data: [
                        "hosts_added": .array(newHosts.subtracting(oldHosts).sorted().map { .string($0) }),
                        "hosts_removed": .array(oldHosts.subtracting(newHosts).sorted().map { .string($0) }),
                        "healed_from": .string(host.name),
                    ], into: &c)
                if old.status == .active { action("lease.update", lease: l, at: now, into: &c) }
            } else {
                cal.add(old)
                var l = old
                l.degraded = true
                l.degradedReason =
                    "host \(host.name) is \(host.state.rawValue) and no other capacity satisfies the same requests"
                l.updatedAt = now
                c.leaseUpdates.append(l)
                event("lease.updated", at: now, lease: l, data: ["degraded_reason": JSON(l.degradedReason)], into: &c)
            }
        }
        for id in (state.livePreemptibles[host.name] ?? []).sorted() {
            guard var p = state.preemptibles[id], p.status.isLive else { continue }
            p.status = .ended
            p.endedAt = max(now, p.createdAt)
            p.updatedAt = now
            c.preemptibleUpdates.append(p)
            event(
                "preemptible.ended", at: now, preemptible: p,
                data: ["reason": "host_down", "slurm_node": JSON(p.slurmNode)], into: &c)
            preemptibleAction("preemptible.end", p, at: now, into: &c)
        }
    }

    /// Refuses (-32005) a host update that takes away what current or future allocations hold: a GPU
    /// holding slices (removed, or given another model), or vcpus/memory/disk below the instance
    /// slots' usage at their busiest instant.
    func checkShrink(from old: Host, to new: Host, now: Timestamp) throws(BerthError) {
        let future = Interval(start: now.seconds, end: Timestamp.distantFuture.seconds)
        let held = state.calendar.entries(host: old.name, overlapping: future)
        var usages: [InstanceUsage] = []
        var instanceLeases: Set<String> = []
        var gpuLeases: [Int: Set<String>] = [:]
        for (iv, e) in held {
            switch e.usage {
            case .gpuSlices(let gpu, _, _, _):
                gpuLeases[gpu, default: []].insert(e.isPreemptible ? "preemptible \(e.reservationID)" : e.leaseID)
            case .instances(let n, let v, let m, let d):
                usages.append(
                    InstanceUsage(interval: iv, total: InstanceSize(vcpus: v * n, memoryMB: m * n, diskGB: d * n)))
                instanceLeases.insert(e.isPreemptible ? "preemptible \(e.reservationID)" : e.leaseID)
            case .wholeHost: break
            }
        }
        func ids(_ s: Set<String>) -> JSON { .array(s.sorted().map { .string($0) }) }
        for (k, leaseIDs) in gpuLeases.sorted(by: { $0.key < $1.key })
        where k >= new.gpus.count || new.gpus[k] != old.gpus[k] {
            throw BerthError(
                .conflict,
                "host '\(old.name)' GPU \(k) (\(k < old.gpus.count ? old.gpus[k].model : "?")) holds slices of current or future leases; it cannot be removed or change model",
                data: ["lease_ids": ids(leaseIDs)])
        }
        let peak = InstanceFit.peakUsage(usages, within: future)
        let capacity = InstanceSize(vcpus: new.vcpus, memoryMB: new.memoryMB, diskGB: new.diskGB)
        if !peak.fits(in: capacity) {
            throw BerthError(
                .conflict,
                "host '\(old.name)' instance slots of current or future leases use up to \(peak) at once; it cannot shrink to \(capacity)",
                data: ["lease_ids": ids(instanceLeases)])
        }
    }

    func hostDelete(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let host = try requireHost(HostDeleteParams.parse(params).name)
        let now = clock.now()
        let holding = state.calendar.entries(
            host: host.name, overlapping: Interval(start: now.seconds, end: Timestamp.distantFuture.seconds))
        if !holding.isEmpty {
            let ids = Set(holding.filter { !$0.payload.isPreemptible }.map(\.payload.leaseID)).sorted()
            let pre = Set(holding.filter { $0.payload.isPreemptible }.map(\.payload.reservationID)).sorted()
            var what: [String] = []
            if !ids.isEmpty {
                what.append("\(ids.count) lease\(ids.count == 1 ? "" : "s") (\(ids.prefix(5).joined(separator: ", ")))")
            }
            if !pre.isEmpty {
                what.append(
                    "\(pre.count) preemptible\(pre.count == 1 ? "" : "s") (\(pre.prefix(5).joined(separator: ", ")))")
            }
            throw BerthError(
                .conflict,
                "host '\(host.name)' holds current or future allocations of \(what.joined(separator: " and "))",
                data: [
                    "lease_ids": .array(ids.map { .string($0) }), "preemptible_ids": .array(pre.map { .string($0) }),
                ])
        }
        var c = Change()
        c.mutation.deletedHosts = [host.name]
        event("host.deleted", at: now, host: host.name, into: &c)
        let result: JSON = .object([:])
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        state.removeHost(named: host.name)
        return result
    }

    // MARK: Properties

    /// Every property some host has, with its distinct values (as strings) and its private flag.
    func propertyValues() -> [String: Set<String>] {
        var values: [String: Set<String>] = [:]
        for h in state.sortedHosts {
            for (k, v) in h.properties { values[k, default: []].insert(Scheduler.propertyText(v)) }
        }
        return values
    }

    static func propertyText(_ v: JSON) -> String {
        switch v {
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        default: return v.serialized()
        }
    }

    func propertyJSON(_ name: String, values: Set<String>) -> JSON {
        [
            "property": .string(name), "private": .bool(state.privateProperties.contains(name)),
            "values": .array(values.sorted().map { .string($0) }),
        ]
    }

    func hostProperties(all: Bool) -> JSON {
        let values = propertyValues()
        let items = values.keys.sorted().filter { all || !state.privateProperties.contains($0) }
        return ["items": .array(items.map { propertyJSON($0, values: values[$0]!) })]
    }

    func setPropertyPrivate(_ name: String, _ isPrivate: Bool) throws(BerthError) -> JSON {
        guard let v = propertyValues()[name] else { throw .notFound("no host has the property '\(name)'") }
        var set = state.privateProperties
        if isPrivate { set.insert(name) } else { set.remove(name) }
        var c = Change()
        c.mutation.meta["private_properties"] = JSON.array(set.sorted().map { .string($0) }).serialized()
        try apply(c)
        state.privateProperties = set
        return propertyJSON(name, values: v)
    }

    /// Private host properties are Blazar's notion (the REST API's `PATCH
    /// /v1/os-hosts/properties/{name}`), not the contract's: these two serve it, with the same
    /// durability as a contract call (the reply waits for the commit).
    public nonisolated func hostPropertyList(all: Bool) async throws(BerthError) -> JSON {
        try await durably { s throws(BerthError) in s.hostProperties(all: all) }
    }

    public nonisolated func hostPropertyUpdate(_ name: String, isPrivate: Bool) async throws(BerthError) -> JSON {
        try await durably { s throws(BerthError) in try s.setPropertyPrivate(name, isPrivate) }
    }

    nonisolated func durably(_ body: @Sendable (isolated Scheduler) throws(BerthError) -> JSON) async throws(BerthError)
        -> JSON
    {
        let (result, ticket) = await run(body)
        try await commits.waitDurable(ticket)
        return try result.get()
    }

    func run(_ body: @Sendable (isolated Scheduler) throws(BerthError) -> JSON) -> (
        Result<JSON, BerthError>, GroupCommit.Ticket
    ) {
        do throws(BerthError) {
            try ensureRestored()
            return (.success(try body(self)), memoryTicket)
        } catch {
            return (.failure(error), memoryTicket)
        }
    }
}
