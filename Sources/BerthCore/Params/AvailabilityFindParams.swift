import BerthJSON

/// `availability.find` params. `earliest` is never before `now`; without `latest` the search looks
/// `searchHorizon` (plus the duration) past `earliest`.
public struct AvailabilityFindParams: Sendable {
    public var requests: [ReservationRequest]
    public var duration: Int64
    public var earliest: Timestamp
    public var latest: Timestamp
    public var limit: Int

    public static func parse(_ params: JSON?, now: Timestamp, searchHorizon: Int64, models: GPUModelTable)
        throws(BerthError) -> AvailabilityFindParams
    {
        var r = ParamReader(params)
        let requests = r.reservations(required: true, models: models)
        let duration = r.int("duration_s", required: true, min: 1, max: 10 * 366 * 86_400)
        var earliest = r.timestamp("earliest", now: now) ?? now
        let latestGiven = r.timestamp("latest", now: now)
        let limit = Int(r.int("limit", min: 1, max: 100) ?? 5)
        if earliest < now { earliest = now }
        let latest = latestGiven ?? (earliest + searchHorizon + (duration ?? 0))
        if let duration, latestGiven != nil, earliest + duration > latest {
            r.fail("latest", "leaves no room for \(duration) s after \(earliest)")
        }
        try r.finish()
        guard let requests, let duration else { throw .invalidParam("params", "incomplete search") }
        return AvailabilityFindParams(
            requests: requests.map(\.request), duration: duration, earliest: earliest, latest: latest, limit: limit)
    }
}
