import BerthCore

/// One lifecycle moment of one lease (or one preemptible's preemption), due at `at`.
struct LeaseTimer: Comparable {
    /// At the same instant: ends free capacity first, and preemptions happen before starts.
    enum Kind: Int { case end = 0, preempt = 1, beforeEnd = 2, start = 3 }
    var at: Timestamp
    var kind: Kind
    /// A lease id, or a preemptible id for `.preempt`.
    var leaseID: String

    static func < (a: LeaseTimer, b: LeaseTimer) -> Bool {
        (a.at, a.kind.rawValue, a.leaseID) < (b.at, b.kind.rawValue, b.leaseID)
    }

    /// The timers a lease still owes, given its state.
    static func timers(for l: Lease) -> [LeaseTimer] {
        switch l.status {
        case .pending:
            var out = [
                LeaseTimer(at: l.start, kind: .start, leaseID: l.id), LeaseTimer(at: l.end, kind: .end, leaseID: l.id),
            ]
            if let b = l.beforeEndAt { out.append(LeaseTimer(at: b, kind: .beforeEnd, leaseID: l.id)) }
            return out
        case .active:
            var out = [LeaseTimer(at: l.end, kind: .end, leaseID: l.id)]
            if let b = l.beforeEndAt, !l.beforeEndFired {
                out.append(LeaseTimer(at: b, kind: .beforeEnd, leaseID: l.id))
            }
            return out
        default:
            return []
        }
    }
}
