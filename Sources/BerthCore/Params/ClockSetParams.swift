import BerthJSON

/// `clock.set` params: `{ now }`, the time a manual clock moves to.
public struct ClockSetParams: Sendable {
    public var now: Timestamp

    public static func parse(_ params: JSON?) throws(BerthError) -> ClockSetParams {
        var r = ParamReader(params)
        let t = r.timestamp("now", required: true)
        try r.finish()
        guard let t else { throw .invalidParam("now", "is required") }
        return ClockSetParams(now: t)
    }
}
