import BerthCore
import BerthJSON
import HeapModule

extension Scheduler {
    /// Fires every timer due at or before `now` and returns once the transitions are on disk.
    public nonisolated func processDue() async {
        let ticket = await fireDueTimers()
        do throws(BerthError) {
            try await commits.waitDurable(ticket)
        } catch {
            logger.error("lifecycle transitions could not be stored", metadata: ["error": "\(error.message)"])
        }
    }

    /// Fires every timer due at or before `now`, in time order, one change per transition; returns
    /// the ticket to wait for.
    func fireDueTimers() -> GroupCommit.Ticket {
        do throws(BerthError) {
            try ensureRestored()
        } catch {
            return memoryTicket
        }
        fireDue()
        return memoryTicket
    }

    /// Fires every timer due at or before `now`, in time order, one change per transition.
    func fireDue() {
        let now = clock.now()
        while let t = state.timers.min, t.at <= now {
            _ = state.timers.removeMin()
            accrueUsage(upTo: t.at)
            do {
                try fire(t)
            } catch {
                // Storage refused the transition: put it back and retry on the next tick.
                state.timers.insert(t)
                logger.error(
                    "lifecycle transition failed", metadata: ["lease.id": "\(t.leaseID)", "error": "\(error)"])
                return
            }
        }
        accrueUsage(upTo: now)
    }

    /// The next instant a timer is due (the system-clock ticker sleeps until then).
    public func nextDue() -> Timestamp? { state.timers.min?.at }

    /// Timers are never removed eagerly; a popped timer that no longer matches its lease is ignored.
    func fire(_ t: LeaseTimer) throws(BerthError) {
        if t.kind == .preempt { return try firePreemption(t) }
        guard var l = state.leases[t.leaseID] else { return }
        var c = Change()
        switch t.kind {
        case .preempt:
            return
        case .start:
            guard l.status == .pending, l.start == t.at else { return }
            l.status = .active
            for i in l.reservations.indices where l.reservations[i].status == .pending {
                l.reservations[i].status = .active
            }
            l.updatedAt = t.at
            event("lease.started", at: t.at, lease: l, into: &c)
            action("lease.start", lease: l, at: t.at, into: &c)
        case .beforeEnd:
            guard l.status == .active || l.status == .pending, !l.beforeEndFired, l.beforeEndAt == t.at else { return }
            if l.status == .pending { return }  // the start timer has not fired yet; it re-arms this one
            l.beforeEndFired = true
            l.updatedAt = t.at
            event("lease.before_end", at: t.at, lease: l, data: ["end": .string(l.end.rfc3339)], into: &c)
        case .end:
            guard l.status == .active || l.status == .pending, l.end == t.at else { return }
            let wasActive = l.status == .active
            l.status = .ended
            for i in l.reservations.indices { l.reservations[i].status = .ended }
            l.updatedAt = t.at
            event("lease.ended", at: t.at, lease: l, into: &c)
            if wasActive { action("lease.end", lease: l, at: t.at, into: &c) }
        }
        c.leaseUpdates = [l]
        try apply(c)
    }

    /// The latest time a manual clock may show: the scheduler looks at `[now, distantFuture)`
    /// (calendar queries, host updates), which must not be empty.
    static let latestManualTime = Timestamp.distantFuture - 1

    /// Moves a manual clock and processes everything due up to the new time. `param` names the
    /// parameter that asked for `t`, for the error when `t` is out of range.
    func setClock(_ t: Timestamp, param: String) throws(BerthError) -> Timestamp {
        guard clock.mode == .manual else { throw BerthError(.conflict, "the clock is not manual") }
        if t > Scheduler.latestManualTime {
            throw .invalidParam(param, "the clock cannot go past \(Scheduler.latestManualTime.rfc3339)")
        }
        let current = clock.now()
        if t < current {
            throw BerthError(.conflict, "the clock cannot move backwards (now \(current), asked for \(t))")
        }
        // The clock moves before its change is enqueued: refuse first if nothing can be stored.
        // (A commit failing meanwhile makes the next command restore memory, clock included.)
        try commits.checkWritable()
        clock.set(t)
        fireDue()
        // `apply` records the manual clock with every change; this one records only the time.
        try apply(Change())
        return clock.now()
    }

    // MARK: - Methods

    func clockNow(_ params: JSON?) throws(BerthError) -> JSON {
        _ = try ClockNowParams.parse(params)
        return ["now": .string(clock.now().rfc3339)]
    }

    func clockSet(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try ClockSetParams.parse(params)
        return ["now": .string(try setClock(p.now, param: "now").rfc3339)]
    }

    func clockAdvance(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try ClockAdvanceParams.parse(params)
        return ["now": .string(try setClock(clock.now() + p.seconds, param: "seconds").rfc3339)]
    }
}
