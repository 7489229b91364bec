import BerthJSON

/// `host.get` params: `{ name }`.
public struct HostGetParams: Sendable {
    public var name: String

    public static func parse(_ params: JSON?) throws(BerthError) -> HostGetParams {
        var r = ParamReader(params)
        let name = r.string("name", required: true)
        try r.finish()
        guard let name else { throw .invalidParam("name", "is required") }
        return HostGetParams(name: name)
    }
}
