import BerthCore
import BerthJSON

extension Scheduler {
    func requireLease(_ id: String) throws(BerthError) -> Lease {
        guard let l = state.leases[id] else { throw .notFound("no lease with id '\(id)'") }
        return l
    }

    func leaseCreate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        let q = try LeaseCreateParams.parse(params, now: now, startGrace: policy.startGrace, models: models)
        let (start, end, requests) = (q.start, q.end, q.reservations)
        try checkPolicy(start: start, end: end)

        let window = Interval(start: start.seconds, end: end.seconds)
        let placed: [[Allocation]]
        switch placeLease(requests.map(\.request), window: window, calendar: state.calendar) {
        case (.success(let a), _): placed = a
        case (.failure(let f), let p):
            throw noCapacity(f, requests: requests.map(\.request), window: window, planner: p)
        }
        var lease = Lease(
            id: UUIDString.random(), name: q.name, projectID: q.projectID, userID: q.userID, start: start, end: end,
            beforeEndSeconds: q.beforeEndSeconds, status: .pending,
            reservations: zip(requests, placed).map { req, allocs in
                Reservation(id: UUIDString.random(), request: req.request, status: .pending, allocations: allocs)
            }, createdAt: now)
        lease.updatedAt = now
        let charges = try price(&lease, now: now)
        var c = Change()
        try planPreemptions(hosts: lease.hostNames, lease: lease, replacing: nil, now: now, into: &c)
        if q.dryRun { return lease.json() }

        c.leaseUpdates = [lease]
        c.addedToCalendar = [lease]
        c.ledgerEntries = charges
        event("lease.created", at: now, lease: lease, into: &c)
        idempotency?.record(result: lease.json(), at: now, into: &c)
        try apply(c)
        state.scheduleTimers(for: lease)
        fireDue()
        return state.leases[lease.id]!.json()
    }

    func leaseGet(_ params: JSON?) throws(BerthError) -> JSON {
        try requireLease(LeaseGetParams.parse(params).id).json()
    }

    func leaseList(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try LeaseListParams.parse(params)
        let (project, status, from, to, limit) = (p.projectID, p.status, p.from, p.to, p.limit)
        let startIndex = p.after.map { CreationCursor.index(after: $0, in: state.leaseOrder) } ?? 0
        var items: [JSON] = []
        var next: JSON = .null
        var i = startIndex
        while i < state.leaseOrder.count {
            let (_, id) = state.leaseOrder[i]
            i += 1
            guard let l = state.leases[id] else { continue }
            if let project, l.projectID != project { continue }
            if let status, l.status != status { continue }
            if let from, l.end <= from { continue }
            if let to, l.start >= to { continue }
            items.append(l.json())
            if items.count == limit {
                if i < state.leaseOrder.count { next = CreationCursor.make(l.createdAt, l.id) }
                break
            }
        }
        return ["items": .array(items), "next_cursor": next]
    }

    func leaseUpdate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        let q = try LeaseUpdateParams.parse(params, now: now, models: models)
        var start = q.start
        let end = q.end
        let old = try requireLease(q.id)
        guard old.status == .pending || old.status == .active else {
            throw .conflict("lease \(old.id) is \(old.status.rawValue); only pending or active leases can be updated")
        }
        var errors = ParamReader(nil)
        if old.status == .active, let s = start, s != old.start {
            throw .conflict("lease \(old.id) is active; its start cannot move (it began at \(old.start))")
        }
        if old.status == .pending, let s = start, s < now {
            if now - s <= policy.startGrace {
                start = now
            } else {
                errors.fail("start", "is in the past (\(s); now is \(now))")
            }
        }
        let newStart = start ?? old.start
        let newEnd = end ?? old.end
        if newEnd <= newStart { errors.fail("end", "must be after start (start \(newStart), end \(newEnd))") }
        if old.status == .active, newEnd <= now {
            errors.fail(
                "end", "must be in the future for an active lease (now is \(now)); delete the lease to end it now")
        }
        // Reservations named by id keep their allocations where they still fit; others are new.
        var plan: [(id: String, request: ReservationRequest, keep: [Allocation], existing: Reservation?)] = []
        if let requests = q.reservations {
            var used: Set<String> = []
            // Without ids, entries match the lease's reservations by position; with ids, by id
            // (entries without one are then new reservations). Unmatched reservations are removed.
            let byPosition = requests.allSatisfy { $0.id == nil }
            for (i, item) in requests.enumerated() {
                if byPosition {
                    if i < old.reservations.count {
                        let existing = old.reservations[i]
                        plan.append(
                            (
                                existing.id, item.request.keepingSource(of: existing.request), existing.allocations,
                                existing
                            ))
                    } else {
                        plan.append((UUIDString.random(), item.request, [], nil))
                    }
                } else if let rid = item.id {
                    guard let existing = old.reservations.first(where: { $0.id == rid }) else {
                        errors.fail(path: "reservations[\(i)].id", "no reservation '\(rid)' in lease \(old.id)")
                        continue
                    }
                    if !used.insert(rid).inserted {
                        errors.fail(path: "reservations[\(i)].id", "reservation '\(rid)' is named twice")
                    }
                    plan.append((rid, item.request.keepingSource(of: existing.request), existing.allocations, existing))
                } else {
                    plan.append((UUIDString.random(), item.request, [], nil))
                }
            }
        } else {
            plan = old.reservations.map { ($0.id, $0.request, $0.allocations, $0) }
        }
        try errors.finish()
        try checkPolicy(start: newStart, end: newEnd)

        // Plan against a calendar without this lease, so it never conflicts with itself.
        var cal = state.calendar
        cal.remove(old)
        let window = Interval(start: newStart.seconds, end: newEnd.seconds)
        let placed: [[Allocation]]
        switch placeLease(plan.map(\.request), window: window, keep: plan.map(\.keep), calendar: cal) {
        case (.success(let a), _): placed = a
        case (.failure(let f), let p): throw noCapacity(f, requests: plan.map(\.request), window: window, planner: p)
        }
        var lease = old
        if let name = q.name { lease.name = name }
        lease.start = newStart
        lease.end = newEnd
        if q.beforeEndGiven { lease.beforeEndSeconds = q.beforeEndSeconds }
        if lease.beforeEndAt != old.beforeEndAt { lease.beforeEndFired = false }
        lease.reservations = zip(plan, placed).map { item, allocs in
            Reservation(id: item.id, request: item.request, status: old.status, allocations: allocs)
        }
        lease.updatedAt = now
        let charges = try price(&lease, now: now)
        var c = Change()
        try planPreemptions(hosts: lease.hostNames, lease: lease, replacing: old.id, now: now, into: &c)
        if q.dryRun { return lease.json() }

        c.leaseUpdates = [lease]
        c.removedFromCalendar = [old]
        c.addedToCalendar = [lease]
        c.ledgerEntries = charges
        let oldHosts = Set(old.reservations.flatMap { $0.allocations.map(\.host) })
        let newHosts = Set(lease.reservations.flatMap { $0.allocations.map(\.host) })
        event(
            "lease.updated", at: now, lease: lease,
            data: [
                "hosts_added": .array(newHosts.subtracting(oldHosts).sorted().map { .string($0) }),
                "hosts_removed": .array(oldHosts.subtracting(newHosts).sorted().map { .string($0) }),
            ], into: &c)
        // The cloud must hear of any change to what an active lease holds: hosts, but also GPU slices
        // and instance slots added or removed on hosts it already had.
        if old.status == .active && (oldHosts != newHosts || Scheduler.placement(old) != Scheduler.placement(lease)) {
            action("lease.update", lease: lease, at: now, into: &c)
        }
        idempotency?.record(result: lease.json(), at: now, into: &c)
        try apply(c)
        state.scheduleTimers(for: lease)
        fireDue()
        return state.leases[lease.id]!.json()
    }

    func leaseDelete(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        let old = try requireLease(LeaseDeleteParams.parse(params).id)
        if old.status == .deleted { throw .conflict("lease \(old.id) is already deleted") }
        var lease = old
        var c = Change()
        c.removedFromCalendar = [old]
        if old.status == .active {
            // An active lease ends now: its capacity is free from this instant.
            lease.end = max(now, lease.start)
            event("lease.ended", at: now, lease: lease, data: ["early": true], into: &c)
            action("lease.end", lease: lease, at: now, into: &c)
        }
        lease.status = .deleted
        for i in lease.reservations.indices { lease.reservations[i].status = .deleted }
        lease.updatedAt = now
        // Everything not yet used comes back: all of it before start, the remainder when active.
        let refunds = state.ledger.planRelease(lease.id, now: now)
        c.ledgerEntries = refunds
        lease.cost = heldAfter(lease.id, refunds)
        event("lease.deleted", at: now, lease: lease, into: &c)
        c.leaseUpdates = [lease]
        let result: JSON = ["refund": .object(LeaseCost.json(CreditLedger.refunds(in: refunds)))]
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        return result
    }
}
