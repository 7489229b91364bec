import BerthJSON

/// `host.update` params: the host's name and the fields to change (nil: unchanged).
public struct HostUpdateParams: Sendable {
    public var name: String
    public var fields: HostFields

    public static func parse(_ params: JSON?, models: GPUModelTable) throws(BerthError) -> HostUpdateParams {
        var r = ParamReader(params)
        let name = r.string("name", required: true)
        let f = HostFields.read(&r, creating: false, models: models)
        _ = r.raw("idempotency_key")
        try r.finish()
        guard let name else { throw .invalidParam("name", "is required") }
        return HostUpdateParams(name: name, fields: f)
    }
}
