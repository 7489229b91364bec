import BerthJSON

/// `host.list` params: an optional property filter (all hosts without one).
public struct HostListParams: Sendable {
    public var filter: PropertyFilter

    public static func parse(_ params: JSON?) throws(BerthError) -> HostListParams {
        var r = ParamReader(params)
        var filter = PropertyFilter.all
        if let p = r.raw("properties") {
            do throws(BerthError) {
                filter = try PropertyFilter(json: p, path: "properties")
            } catch {
                r.merge(error.fieldErrors)
            }
        }
        try r.finish()
        return HostListParams(filter: filter)
    }
}
