import BerthCore
import BerthJSON
import BerthStore

extension Scheduler {
    func availabilityFind(_ params: JSON?) throws(BerthError) -> JSON {
        let now = clock.now()
        var r = ParamReader(params)
        let requests = readReservations(&r, required: true)
        let duration = r.int("duration_s", required: true, min: 1, max: 10 * 366 * 86_400)
        var earliest = r.timestamp("earliest", now: now) ?? now
        let latestGiven = r.timestamp("latest", now: now)
        let limit = Int(r.int("limit", min: 1, max: 100) ?? 5)
        if earliest < now { earliest = now }
        let latest = latestGiven ?? (earliest + policy.searchHorizon + (duration ?? 0))
        if let duration, latestGiven != nil, earliest + duration > latest {
            r.fail("latest", "leaves no room for \(duration) s after \(earliest)")
        }
        try r.finish()
        // A window where a reservation fits by preempting instances past their guarantee is a window.
        let windows = reservationPlanner.findWindows(
            requests!.map(\.request), duration: duration!, earliest: earliest, latest: latest, limit: limit)
        return [
            "items": .array(
                windows.map { ["start": .string(Timestamp(seconds: $0.start).rfc3339), "end": .string(Timestamp(seconds: $0.end).rfc3339)] })
        ]
    }

    /// What the cloud should hold now: reservation id → hosts, for every active lease (the
    /// reconciliation compares Nova's aggregates with it).
    public func expectedCloudState() -> [String: (leaseID: String, hosts: Set<String>)] {
        var out: [String: (leaseID: String, hosts: Set<String>)] = [:]
        for l in leases.values where l.status == .active {
            for r in l.reservations { out[r.id] = (l.id, Set(r.allocations.map(\.host))) }
        }
        return out
    }

    func calendarGet(_ params: JSON?) throws(BerthError) -> JSON {
        var r = ParamReader(params)
        let from = r.timestamp("from", required: true)
        let to = r.timestamp("to", required: true)
        let names = r.stringArray("hosts")
        if let from, let to, to <= from { r.fail("to", "must be after from") }
        try r.finish()
        var selected: [Host] = []
        if let names {
            for n in names { selected.append(try requireHost(n)) }
        } else {
            selected = sortedHosts
        }
        let window = Interval(start: from!.seconds, end: to!.seconds)
        let rows: [JSON] = selected.map { h in
            let allocs: [JSON] = calendar.entries(host: h.name, overlapping: window).compactMap { iv, entry -> JSON? in
                if entry.isPreemptible {
                    // One allocation per preemptible (its GPU slice entry is folded into it).
                    guard case .instances = entry.usage, let p = preemptibles[entry.reservationID] else { return nil }
                    var o: [String: JSON] = [
                        "lease_id": .null, "reservation_id": .null, "lease_name": .null, "preemptible_id": .string(p.id),
                        "project_id": .string(p.projectID), "kind": "preemptible",
                        "start": .string(Timestamp(seconds: iv.start).rfc3339),
                        "end": iv.end >= LeaseCalendar.openEnd ? .null : .string(Timestamp(seconds: iv.end).rfc3339),
                        "status": .string(p.status.rawValue), "slots": 1,
                    ]
                    if let g = p.gpu, let slot = p.slot {
                        o["gpu"] = .int(Int64(g))
                        o["slot"] = .int(Int64(slot))
                        o["size"] = .int(Int64(p.sliceSize ?? 1))
                        o["profile"] = JSON(p.gpuProfile)
                    }
                    return .object(o)
                }
                let l = leases[entry.leaseID]
                let res = l?.reservations.first { $0.id == entry.reservationID }
                var o: [String: JSON] = [
                    "lease_id": .string(entry.leaseID), "reservation_id": .string(entry.reservationID),
                    "project_id": JSON(l?.projectID), "kind": .string(res?.request.kind.rawValue ?? "host"),
                    "start": .string(Timestamp(seconds: iv.start).rfc3339), "end": .string(Timestamp(seconds: iv.end).rfc3339),
                    "status": .string(l?.status.rawValue ?? "pending"), "lease_name": JSON(l?.name),
                ]
                switch entry.usage {
                case .wholeHost:
                    break
                case .gpuSlices(let gpu, let slot, let size, _):
                    o["gpu"] = .int(Int64(gpu))
                    o["slot"] = .int(Int64(slot))
                    o["size"] = .int(Int64(size))
                    o["profile"] = JSON(res?.allocations.first { $0.host == h.name && $0.gpu == gpu && $0.slot == slot }?.profile)
                case .instances(let count, _, _, _):
                    o["slots"] = .int(count)
                }
                return .object(o)
            }
            return ["name": .string(h.name), "state": .string(h.state.rawValue), "allocations": .array(allocs)]
        }
        return ["from": .string(from!.rfc3339), "to": .string(to!.rfc3339), "hosts": .array(rows)]
    }
}

/// Read-only queries served straight from SQLite (no need to queue behind the scheduler actor).
public struct StoreQueries: Sendable {
    let store: BerthStore

    public init(store: BerthStore) { self.store = store }

    public func eventsList(_ params: JSON?) throws(BerthError) -> JSON {
        var r = ParamReader(params)
        let after = r.int("after_seq", min: 0) ?? 0
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        let types = r.eventTypePatterns("types") ?? []
        try r.finish()
        let items = try store.events(afterSeq: after, limit: limit, types: types)
        return [
            "items": .array(items.map(\.json)),
            "next_cursor": items.count == limit ? .int(items.last!.seq) : .null,
        ]
    }

    public func actionsList(_ params: JSON?) throws(BerthError) -> JSON {
        var r = ParamReader(params)
        let status = r.enumValue("status", ActionStatus.self)
        let lease = r.string("lease_id")
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        var after: Int64 = 0
        if let c = r.string("cursor") {
            if let v = Int64(c), v >= 0 { after = v } else { r.fail("cursor", "is not a cursor returned by actions.list") }
        }
        try r.finish()
        let rows = try store.actions(status: status, leaseID: lease, afterSeq: after, limit: limit)
        return [
            "items": .array(rows.map(\.action.json)),
            "next_cursor": rows.count == limit ? .string(String(rows.last!.seq)) : .null,
        ]
    }
}
