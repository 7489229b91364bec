import BerthJSON

/// `lease.update` params as given: what is nil stays as the lease has it. Checks against the
/// lease itself (its status, its reservations' ids, the start grace) are the handler's.
public struct LeaseUpdateParams: Sendable {
    public var id: String
    public var name: String?
    public var start: Timestamp?
    public var end: Timestamp?
    /// Whether `before_end_s` was given (a null one clears it).
    public var beforeEndGiven: Bool
    public var beforeEndSeconds: Int64?
    public var reservations: [(id: String?, request: ReservationRequest)]?
    public var dryRun: Bool

    public static func parse(_ params: JSON?, now: Timestamp, models: GPUModelTable) throws(BerthError)
        -> LeaseUpdateParams
    {
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        let name = r.string("name")
        let start = r.timestamp("start", now: now)
        let end = r.timestamp("end")
        let beforeEndGiven = r.has("before_end_s")
        let beforeEnd = r.int("before_end_s", min: 0)
        let requests = r.reservations(required: false, models: models)
        let dryRun = r.bool("dry_run") ?? false
        _ = r.raw("idempotency_key")
        try r.finish()
        guard let id else { throw .invalidParam("id", "is required") }
        return LeaseUpdateParams(
            id: id, name: name, start: start, end: end, beforeEndGiven: beforeEndGiven, beforeEndSeconds: beforeEnd,
            reservations: requests, dryRun: dryRun)
    }
}
