import BerthJSON

/// `lease.create` params. A `start` in the past by at most `startGrace` seconds (client clock
/// skew) is taken as `now`; further back it is refused.
public struct LeaseCreateParams: Sendable {
    public var name: String
    public var projectID: String
    public var userID: String?
    public var start: Timestamp
    public var end: Timestamp
    public var beforeEndSeconds: Int64?
    public var reservations: [(id: String?, request: ReservationRequest)]
    public var dryRun: Bool

    public static func parse(_ params: JSON?, now: Timestamp, startGrace: Int64, models: GPUModelTable)
        throws(BerthError)
        -> LeaseCreateParams
    {
        var r = ParamReader(params)
        let name = r.string("name", required: true)
        let project = r.string("project_id", required: true)
        let user = r.string("user_id")
        var start = r.timestamp("start", required: true, now: now)
        let end = r.timestamp("end", required: true)
        let beforeEnd = r.int("before_end_s", min: 0)
        let requests = r.reservations(required: true, models: models)
        let dryRun = r.bool("dry_run") ?? false
        _ = r.raw("idempotency_key")
        if let s = start, s < now {
            if now - s <= startGrace { start = now } else { r.fail("start", "is in the past (\(s); now is \(now))") }
        }
        if let start, let end, end <= start {
            r.fail("end", "must be after start (start \(start), end \(end))")
        }
        try r.finish()
        guard let name, let project, let start, let end, let requests else {
            throw .invalidParam("params", "incomplete lease")
        }
        return LeaseCreateParams(
            name: name, projectID: project, userID: user, start: start, end: end, beforeEndSeconds: beforeEnd,
            reservations: requests, dryRun: dryRun)
    }
}
