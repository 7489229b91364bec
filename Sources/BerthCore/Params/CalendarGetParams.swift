import BerthJSON

/// `calendar.get` params: the window `[from, to)` and optionally which hosts (all without).
public struct CalendarGetParams: Sendable {
    public var from: Timestamp
    public var to: Timestamp
    public var hosts: [String]?

    public static func parse(_ params: JSON?) throws(BerthError) -> CalendarGetParams {
        var r = ParamReader(params)
        let from = r.timestamp("from", required: true)
        let to = r.timestamp("to", required: true)
        let names = r.stringArray("hosts")
        if let from, let to, to <= from { r.fail("to", "must be after from") }
        try r.finish()
        guard let from, let to else { throw .invalidParam("params", "incomplete window") }
        return CalendarGetParams(from: from, to: to, hosts: names)
    }
}
