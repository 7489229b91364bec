/// Part of a lease's charge for one class: `units` per hour over `[origin, end)`, priced from `origin`
/// (see `LeaseCost`). `pieces` are the draws in lease-time order; a piece `[a, b)` (all draws with
/// that time range) holds exactly `C(b − origin) − C(a − origin)`.
public struct HeldSegment: Sendable, Hashable {
    public var origin: Timestamp
    public var end: Timestamp
    public var units: Int64
    public var pieces: [CreditDraw]

    public var amount: CreditAmount { pieces.reduce(.zero) { $0 + $1.amount } }
}

/// What one lease holds now, per class: segments in time order (a new segment starts when the
/// rate changes while the lease is active).
public struct LeaseHolding: Sendable, Hashable {
    public var projectID: String
    public var segments: [ResourceClass: [HeldSegment]]

    /// Net amount charged per class (the lease's `cost`); classes holding nothing are left out.
    public var held: [ResourceClass: CreditAmount] {
        var out: [ResourceClass: CreditAmount] = [:]
        for (c, segs) in segments {
            let v = segs.reduce(CreditAmount.zero) { $0 + $1.amount }
            if !v.isZero { out[c] = v }
        }
        return out
    }
}
