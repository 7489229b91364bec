import BerthJSON

/// `events.list` params: events after `after_seq`, at most `limit`, optionally of some types.
public struct EventsListParams: Sendable {
    public var afterSeq: Int64
    public var limit: Int
    /// Event type patterns (empty: every type).
    public var types: [String]

    public static func parse(_ params: JSON?) throws(BerthError) -> EventsListParams {
        var r = ParamReader(params)
        let after = r.int("after_seq", min: 0) ?? 0
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        let types = r.eventTypePatterns("types") ?? []
        try r.finish()
        return EventsListParams(afterSeq: after, limit: limit, types: types)
    }
}
