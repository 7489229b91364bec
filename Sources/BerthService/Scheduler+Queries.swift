import BerthCore
import BerthJSON

extension Scheduler {
    /// What the cloud should hold now: reservation id → hosts, for every active lease (the
    /// reconciliation compares Nova's aggregates with it).
    public func expectedCloudState() -> [String: (leaseID: String, hosts: Set<String>)] {
        var out: [String: (leaseID: String, hosts: Set<String>)] = [:]
        for l in state.leases.values where l.status == .active {
            for r in l.reservations { out[r.id] = (l.id, Set(r.allocations.map(\.host))) }
        }
        return out
    }

    func calendarGet(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try CalendarGetParams.parse(params)
        let (from, to) = (p.from, p.to)
        var selected: [Host] = []
        if let names = p.hosts {
            for n in names { selected.append(try requireHost(n)) }
        } else {
            selected = state.sortedHosts
        }
        let window = Interval(start: from.seconds, end: to.seconds)
        let rows: [JSON] = selected.map { h in
            let allocs: [JSON] = state.calendar.entries(host: h.name, overlapping: window).compactMap {
                iv, entry -> JSON? in
                if entry.isPreemptible {
                    // One allocation per preemptible (its GPU slice entry is folded into it).
                    guard case .instances = entry.usage, let p = state.preemptibles[entry.reservationID] else {
                        return nil
                    }
                    var o: [String: JSON] = [
                        "lease_id": .null, "reservation_id": .null, "lease_name": .null,
                        "preemptible_id": .string(p.id),
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
                let l = state.leases[entry.leaseID]
                let res = l?.reservations.first { $0.id == entry.reservationID }
                var o: [String: JSON] = [
                    "lease_id": .string(entry.leaseID), "reservation_id": .string(entry.reservationID),
                    "project_id": JSON(l?.projectID), "kind": .string(res?.request.kind.rawValue ?? "host"),
                    "start": .string(Timestamp(seconds: iv.start).rfc3339),
                    "end": .string(Timestamp(seconds: iv.end).rfc3339),
                    "status": .string(l?.status.rawValue ?? "pending"), "lease_name": JSON(l?.name),
                ]
                switch entry.usage {
                case .wholeHost:
                    break
                case .gpuSlices(let gpu, let slot, let size, _):
                    o["gpu"] = .int(Int64(gpu))
                    o["slot"] = .int(Int64(slot))
                    o["size"] = .int(Int64(size))
                    o["profile"] = JSON(
                        res?.allocations.first { $0.host == h.name && $0.gpu == gpu && $0.slot == slot }?.profile)
                case .instances(let count, _, _, _):
                    o["slots"] = .int(count)
                }
                return .object(o)
            }
            return ["name": .string(h.name), "state": .string(h.state.rawValue), "allocations": .array(allocs)]
        }
        return ["from": .string(from.rfc3339), "to": .string(to.rfc3339), "hosts": .array(rows)]
    }
}
