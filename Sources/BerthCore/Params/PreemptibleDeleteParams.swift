import BerthJSON

/// `preemptible.delete` params: `{ id, idempotency_key? }`.
public struct PreemptibleDeleteParams: Sendable {
    public var id: String

    public static func parse(_ params: JSON?) throws(BerthError) -> PreemptibleDeleteParams {
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        _ = r.raw("idempotency_key")
        try r.finish()
        guard let id else { throw .invalidParam("id", "is required") }
        return PreemptibleDeleteParams(id: id)
    }
}
