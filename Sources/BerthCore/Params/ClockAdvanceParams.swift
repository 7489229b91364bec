import BerthJSON

/// `clock.advance` params: `{ seconds }` to move a manual clock forward by (at most a century).
public struct ClockAdvanceParams: Sendable {
    public var seconds: Int64

    public static func parse(_ params: JSON?) throws(BerthError) -> ClockAdvanceParams {
        var r = ParamReader(params)
        let s = r.int("seconds", required: true, min: 0, max: 100 * 366 * 86_400)
        try r.finish()
        guard let s else { throw .invalidParam("seconds", "is required") }
        return ClockAdvanceParams(seconds: s)
    }
}
