import BerthJSON

/// `preemptible.get` params: `{ id }`.
public struct PreemptibleGetParams: Sendable {
    public var id: String

    public static func parse(_ params: JSON?) throws(BerthError) -> PreemptibleGetParams {
        var r = ParamReader(params)
        let id = r.string("id", required: true)
        try r.finish()
        guard let id else { throw .invalidParam("id", "is required") }
        return PreemptibleGetParams(id: id)
    }
}
