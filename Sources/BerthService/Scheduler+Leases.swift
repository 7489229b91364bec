import BerthCore
import BerthJSON
import BerthStore

extension String {
    func replacingSuffix(_ suffix: String, with replacement: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + replacement : self
    }
}

extension Scheduler {
    var planner: LeasePlanner { LeasePlanner(inventory: inventory, calendar: calendar, models: models) }

    /// The planner that sees preemptibles only until their guarantees end: what a reservation may take.
    var reservationPlanner: LeasePlanner {
        var cal = calendar
        if !livePreemptibles.isEmpty { cal.preemptibleView = .guaranteedOnly }
        return LeasePlanner(inventory: inventory, calendar: cal, models: models)
    }

    func requireLease(_ id: String) throws(BerthError) -> Lease {
        guard let l = leases[id] else { throw .notFound("no lease with id '\(id)'") }
        return l
    }

    /// Parses `reservations`, checking GPU profiles and models against the model table.
    func readReservations(_ r: inout ParamReader, required: Bool) -> [(id: String?, request: ReservationRequest)]? {
        guard let list = r.array("reservations", required: required) else { return nil }
        if list.isEmpty {
            r.fail("reservations", "must contain at least one reservation")
            return nil
        }
        if list.count > 100 { r.fail("reservations", "at most 100 reservations per lease") }
        var out: [(String?, ReservationRequest)] = []
        var errors: [BerthError.FieldError] = []
        for (i, item) in list.enumerated() {
            let path = "\(r.fieldPath("reservations"))[\(i)]"
            if let req = ReservationRequest.parse(item, path: path, errors: &errors) {
                if req.kind == .gpu, let profile = req.profile {
                    do throws(BerthError) {
                        _ = try models.resolve(profile: profile, gpuModel: req.gpuModel, path: path)
                    } catch {
                        errors.append(contentsOf: error.fieldErrors)
                        continue
                    }
                }
                if req.kind == .instance, let profile = req.gpuProfile {
                    do throws(BerthError) {
                        _ = try models.resolve(profile: profile, gpuModel: req.gpuModel, path: path)
                    } catch {
                        // resolve() names `profile`; for instances the field is `gpu_profile`.
                        errors.append(contentsOf: error.fieldErrors.map {
                            .init(path: $0.path.replacingSuffix(".profile", with: ".gpu_profile"), message: $0.message)
                        })
                        continue
                    }
                }
                var id: String? = nil
                if let v = item["id"], !v.isNull {
                    if let s = v.stringValue { id = s } else { errors.append(.init(path: "\(path).id", message: "expected a string")) }
                }
                out.append((id, req))
            }
        }
        r.merge(errors)
        return errors.isEmpty ? out : nil
    }

    /// Fails with `no_capacity`, adding `earliest_start` when a later start of the same length would fit.
    func noCapacity(_ failure: LeasePlanner.Failure, requests: [ReservationRequest], window: Interval, planner p: LeasePlanner)
        -> BerthError
    {
        guard case .busy(let message) = failure else { return BerthError(.noCapacity, failure.message) }
        let from = Timestamp(seconds: window.start + 1)
        let found = p.findWindows(
            requests, duration: window.length, earliest: from, latest: from + policy.searchHorizon + window.length, limit: 1)
        if let w = found.first {
            return BerthError(.noCapacity, message + "; earliest start that fits: \(Timestamp(seconds: w.start))",
                data: ["earliest_start": .string(Timestamp(seconds: w.start).rfc3339)])
        }
        return BerthError(.noCapacity, message + "; nothing fits within the search horizon")
    }

    /// Plans the ledger entries that bring a lease's charge to what it now holds (-32003 when the
    /// project's valid grants cannot pay and enforcement is on), and sets its `cost` to what it
    /// will hold once they apply.
    func price(_ lease: inout Lease, now: Timestamp) throws(BerthError) -> [LedgerEntry] {
        // The hosts by name are already at hand: no lookup table is built per request.
        let hosts = self.hosts
        let rates = LeaseCost.rates(of: lease.reservations, models: models) { host, gpu in
            guard let gpus = hosts[host]?.gpus, gpu >= 0, gpu < gpus.count else { return nil }
            return gpus[gpu].model
        }
        let entries = try ledger.planLease(
            lease.id, project: lease.projectID, rates: rates, start: lease.start, end: lease.end, now: now)
        lease.cost = heldAfter(lease.id, entries)
        return entries
    }

    /// What a lease will hold once `entries` apply: its net charge now, plus charges, minus refunds
    /// (computed, rather than applied to a copy of the whole ledger on every request).
    func heldAfter(_ leaseID: String, _ entries: [LedgerEntry]) -> [String: JSON] {
        var held = ledger.held(lease: leaseID)
        for e in entries where e.leaseID == leaseID {
            switch e.kind {
            case .charge: held[e.resourceClass, default: .zero] += e.amount
            case .refund: held[e.resourceClass, default: .zero] -= e.amount
            default: break
            }
        }
        return LeaseCost.json(held.filter { !$0.value.isZero })
    }

    func checkDuration(start: Timestamp, end: Timestamp, r: inout ParamReader) {
        if end <= start {
            r.fail("end", "must be after start (start \(start), end \(end))")
        }
    }

    func checkPolicy(start: Timestamp, end: Timestamp) throws(BerthError) {
        if let max = policy.maxLeaseDuration, end - start > max {
            throw BerthError(
                .policyViolation, "lease lasts \(end - start) s, longer than the configured maximum of \(max) s",
                data: ["rule": "max_lease_duration", "max_s": .int(max)])
        }
    }

    func leaseCreate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        var r = ParamReader(params)
        let name = r.string("name", required: true)
        let project = r.string("project_id", required: true)
        let user = r.string("user_id")
        var start = r.timestamp("start", required: true, now: now)
        let end = r.timestamp("end", required: true)
        let beforeEnd = r.int("before_end_s", min: 0)
        let requests = readReservations(&r, required: true)
        let dryRun = r.bool("dry_run") ?? false
        _ = r.raw("idempotency_key")
        if let s = start, s < now {
            if now - s <= policy.startGrace { start = now } else { r.fail("start", "is in the past (\(s); now is \(now))") }
        }
        if let start, let end { checkDuration(start: start, end: end, r: &r) }
        try r.finish()
        guard let name, let project, let start, let end, let requests else { throw .invalidParam("params", "incomplete lease") }
        try checkPolicy(start: start, end: end)

        let window = Interval(start: start.seconds, end: end.seconds)
        let placed: [[Allocation]]
        switch placeLease(requests.map(\.request), window: window, calendar: calendar) {
        case (.success(let a), _): placed = a
        case (.failure(let f), let p): throw noCapacity(f, requests: requests.map(\.request), window: window, planner: p)
        }
        var lease = Lease(
            id: UUIDString.random(), name: name, projectID: project, userID: user, start: start, end: end,
            beforeEndSeconds: beforeEnd, status: .pending,
            reservations: zip(requests, placed).map { req, allocs in
                Reservation(id: UUIDString.random(), request: req.request, status: .pending, allocations: allocs)
            }, createdAt: now)
        lease.updatedAt = now
        let charges = try price(&lease, now: now)
        var c = Change()
        try planPreemptions(hosts: lease.hostNames, lease: lease, replacing: nil, now: now, into: &c)
        if dryRun { return lease.json() }

        c.leaseUpdates = [lease]
        c.addedToCalendar = [lease]
        c.ledgerEntries = charges
        event("lease.created", at: now, lease: lease, into: &c)
        idempotency?.record(result: lease.json(), at: now, into: &c)
        try apply(c)
        scheduleTimers(for: lease)
        fireDue()
        return leases[lease.id]!.json()
    }

    func leaseGet(_ params: JSON?) throws(BerthError) -> JSON {
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        try r.finish()
        return try requireLease(id!).json()
    }

    func leaseList(_ params: JSON?) throws(BerthError) -> JSON {
        var r = ParamReader(params)
        let project = r.string("project_id")
        let status = r.enumValue("status", LeaseStatus.self)
        let from = r.timestamp("from")
        let to = r.timestamp("to")
        let cursor = r.string("cursor")
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        let after = CreationCursor.parse(cursor, method: "lease.list", into: &r)
        if let from, let to, to <= from { r.fail("to", "must be after from") }
        try r.finish()
        let startIndex = after.map { CreationCursor.index(after: $0, in: leaseOrder) } ?? 0
        var items: [JSON] = []
        var next: JSON = .null
        var i = startIndex
        while i < leaseOrder.count {
            let (_, id) = leaseOrder[i]
            i += 1
            guard let l = leases[id] else { continue }
            if let project, l.projectID != project { continue }
            if let status, l.status != status { continue }
            if let from, l.end <= from { continue }
            if let to, l.start >= to { continue }
            items.append(l.json())
            if items.count == limit {
                if i < leaseOrder.count { next = CreationCursor.make(l.createdAt, l.id) }
                break
            }
        }
        return ["items": .array(items), "next_cursor": next]
    }

    func leaseUpdate(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        let name = r.string("name")
        var start = r.timestamp("start", now: now)
        let end = r.timestamp("end")
        let beforeEndGiven = r.has("before_end_s")
        let beforeEnd = r.int("before_end_s", min: 0)
        let requests = readReservations(&r, required: false)
        let dryRun = r.bool("dry_run") ?? false
        _ = r.raw("idempotency_key")
        try r.finish()
        let old = try requireLease(id!)
        guard old.status == .pending || old.status == .active else {
            throw .conflict("lease \(old.id) is \(old.status.rawValue); only pending or active leases can be updated")
        }
        var errors = ParamReader(nil)
        if old.status == .active, let s = start, s != old.start {
            throw .conflict("lease \(old.id) is active; its start cannot move (it began at \(old.start))")
        }
        if old.status == .pending, let s = start, s < now {
            if now - s <= policy.startGrace { start = now } else { errors.fail("start", "is in the past (\(s); now is \(now))") }
        }
        let newStart = start ?? old.start
        let newEnd = end ?? old.end
        if newEnd <= newStart { errors.fail("end", "must be after start (start \(newStart), end \(newEnd))") }
        if old.status == .active, newEnd <= now { errors.fail("end", "must be in the future for an active lease (now is \(now)); delete the lease to end it now") }
        // Reservations named by id keep their allocations where they still fit; others are new.
        var plan: [(id: String, request: ReservationRequest, keep: [Allocation], existing: Reservation?)] = []
        if let requests {
            var used: Set<String> = []
            // Without ids, entries match the lease's reservations by position; with ids, by id
            // (entries without one are then new reservations). Unmatched reservations are removed.
            let byPosition = requests.allSatisfy { $0.id == nil }
            for (i, item) in requests.enumerated() {
                if byPosition {
                    if i < old.reservations.count {
                        let existing = old.reservations[i]
                        plan.append((existing.id, item.request, existing.allocations, existing))
                    } else {
                        plan.append((UUIDString.random(), item.request, [], nil))
                    }
                } else if let rid = item.id {
                    guard let existing = old.reservations.first(where: { $0.id == rid }) else {
                        errors.fail(path: "reservations[\(i)].id", "no reservation '\(rid)' in lease \(old.id)")
                        continue
                    }
                    if !used.insert(rid).inserted { errors.fail(path: "reservations[\(i)].id", "reservation '\(rid)' is named twice") }
                    plan.append((rid, item.request, existing.allocations, existing))
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
        var cal = calendar
        cal.remove(old)
        let window = Interval(start: newStart.seconds, end: newEnd.seconds)
        let placed: [[Allocation]]
        switch placeLease(plan.map(\.request), window: window, keep: plan.map(\.keep), calendar: cal) {
        case (.success(let a), _): placed = a
        case (.failure(let f), let p): throw noCapacity(f, requests: plan.map(\.request), window: window, planner: p)
        }
        var lease = old
        if let name { lease.name = name }
        lease.start = newStart
        lease.end = newEnd
        if beforeEndGiven { lease.beforeEndSeconds = beforeEnd }
        if lease.beforeEndAt != old.beforeEndAt { lease.beforeEndFired = false }
        lease.reservations = zip(plan, placed).map { item, allocs in
            Reservation(id: item.id, request: item.request, status: old.status, allocations: allocs)
        }
        lease.updatedAt = now
        let charges = try price(&lease, now: now)
        var c = Change()
        try planPreemptions(hosts: lease.hostNames, lease: lease, replacing: old.id, now: now, into: &c)
        if dryRun { return lease.json() }

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
        scheduleTimers(for: lease)
        fireDue()
        return leases[lease.id]!.json()
    }

    func leaseDelete(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        _ = r.raw("idempotency_key")
        try r.finish()
        let old = try requireLease(id!)
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
        let refunds = ledger.planRelease(lease.id, now: now)
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

/// The `created_at:id` cursors of `lease.list` and `preemptible.list`: a position in a list kept
/// sorted by (creation time, id), stable while items are added.
enum CreationCursor {
    static func parse(_ cursor: String?, method: String, into r: inout ParamReader) -> (Timestamp, String)? {
        guard let cursor else { return nil }
        let parts = cursor.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let secs = Int64(parts[0]) else {
            r.fail("cursor", "is not a cursor returned by \(method)")
            return nil
        }
        return (Timestamp(seconds: secs), String(parts[1]))
    }

    static func make(_ createdAt: Timestamp, _ id: String) -> JSON { .string("\(createdAt.seconds):\(id)") }

    /// The first position after `key` (binary search).
    static func index(after key: (Timestamp, String), in order: [(Timestamp, String)]) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if order[mid] <= key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
