import BerthJSON

/// `host.delete` params: `{ name, idempotency_key? }`.
public struct HostDeleteParams: Sendable {
    public var name: String

    public static func parse(_ params: JSON?) throws(BerthError) -> HostDeleteParams {
        var r = ParamReader(params)
        let name = r.string("name", required: true)
        _ = r.raw("idempotency_key")
        try r.finish()
        guard let name else { throw .invalidParam("name", "is required") }
        return HostDeleteParams(name: name)
    }
}
