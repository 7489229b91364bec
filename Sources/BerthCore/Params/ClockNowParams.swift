import BerthJSON

/// `clock.now` params: none.
public struct ClockNowParams: Sendable {
    public static func parse(_ params: JSON?) throws(BerthError) -> ClockNowParams {
        var r = ParamReader(params)
        try r.finish()
        return ClockNowParams()
    }
}
