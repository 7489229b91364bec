import BerthJSON

/// `lease.get` params: `{ id }`.
public struct LeaseGetParams: Sendable {
    public var id: String

    public static func parse(_ params: JSON?) throws(BerthError) -> LeaseGetParams {
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        try r.finish()
        guard let id else { throw .invalidParam("id", "is required") }
        return LeaseGetParams(id: id)
    }
}
