import BerthCore
import BerthJSON

extension Scheduler {
    /// The planner over everything the calendar holds, preemptibles for as long as they run.
    var planner: LeasePlanner { LeasePlanner(inventory: state.inventory, calendar: state.calendar, models: models) }

    /// The planner that sees preemptibles only until their guarantees end: what a reservation may take.
    var reservationPlanner: LeasePlanner {
        var cal = state.calendar
        if !state.livePreemptibles.isEmpty { cal.preemptibleView = .guaranteedOnly }
        return LeasePlanner(inventory: state.inventory, calendar: cal, models: models)
    }

    /// Places a lease's requests so that, when possible, no preemptible is disturbed: first with
    /// preemptibles counted for as long as they run; only if that fails, with them counted only
    /// until their guarantees end (victims are then chosen by `planPreemptions`). Returns the
    /// planner that decided, for `earliest_start` searches.
    func placeLease(
        _ requests: [ReservationRequest], window: Interval, keep: [[Allocation]] = [], calendar cal: LeaseCalendar
    ) -> (Result<[[Allocation]], LeasePlanner.Failure>, LeasePlanner) {
        let strict = LeasePlanner(inventory: state.inventory, calendar: cal, models: models)
        let first = strict.place(requests, window: window, keep: keep)
        guard case .failure(let f) = first, case .busy = f, !state.livePreemptibles.isEmpty else {
            return (first, strict)
        }
        var lenientCalendar = cal
        lenientCalendar.preemptibleView = .guaranteedOnly
        let lenient = LeasePlanner(inventory: state.inventory, calendar: lenientCalendar, models: models)
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
            var ids = state.livePreemptibles[host] ?? []
            for p in c.preemptibleUpdates where p.host == host {
                if p.status.isLive { ids.insert(p.id) } else { ids.remove(p.id) }
            }
            guard !ids.isEmpty, let h = state.hosts[host] else { continue }
            let live = ids.compactMap { pending[$0] ?? state.preemptibles[$0] }.filter(\.status.isLive)
            var holders: [PreemptionPlanner.Holder] = state.calendar.reservationHolders(host: host, from: now.seconds)
                .filter { $0.entry.leaseID != replacing && $0.entry.leaseID != lease?.id }
                .map {
                    PreemptionPlanner.Holder(interval: $0.interval, leaseID: $0.entry.leaseID, usage: $0.entry.usage)
                }
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
                    "host \(host) cannot hold this at \(Timestamp(seconds: t)) without preempting an instance before its guaranteed time"
                )
            }
            for d in plan.decisions {
                guard var p = pending[d.preemptibleID] ?? state.preemptibles[d.preemptibleID] else { continue }
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

    /// Fails with `no_capacity`, adding `earliest_start` when a later start of the same length would fit.
    func noCapacity(
        _ failure: LeasePlanner.Failure, requests: [ReservationRequest], window: Interval, planner p: LeasePlanner
    )
        -> BerthError
    {
        guard case .busy(let message) = failure else { return BerthError(.noCapacity, failure.message) }
        let from = Timestamp(seconds: window.start + 1)
        let found = p.findWindows(
            requests, duration: window.length, earliest: from, latest: from + policy.searchHorizon + window.length,
            limit: 1)
        if let w = found.first {
            return BerthError(
                .noCapacity, message + "; earliest start that fits: \(Timestamp(seconds: w.start))",
                data: ["earliest_start": .string(Timestamp(seconds: w.start).rfc3339)])
        }
        return BerthError(.noCapacity, message + "; nothing fits within the search horizon")
    }

    func checkPolicy(start: Timestamp, end: Timestamp) throws(BerthError) {
        if let max = policy.maxLeaseDuration, end - start > max {
            throw BerthError(
                .policyViolation, "lease lasts \(end - start) s, longer than the configured maximum of \(max) s",
                data: ["rule": "max_lease_duration", "max_s": .int(max)])
        }
    }

    func availabilityFind(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try AvailabilityFindParams.parse(
            params, now: clock.now(), searchHorizon: policy.searchHorizon, models: models)
        // A window where a reservation fits by preempting instances past their guarantee is a window.
        let windows = reservationPlanner.findWindows(
            p.requests, duration: p.duration, earliest: p.earliest, latest: p.latest, limit: p.limit)
        return [
            "items": .array(
                windows.map {
                    [
                        "start": .string(Timestamp(seconds: $0.start).rfc3339),
                        "end": .string(Timestamp(seconds: $0.end).rfc3339),
                    ]
                })
        ]
    }
}
