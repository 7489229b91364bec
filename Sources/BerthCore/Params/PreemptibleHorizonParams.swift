import BerthJSON

/// `preemptible.horizon` params: exactly one of `host` or `id`.
public enum PreemptibleHorizonParams: Sendable {
    case host(String)
    case preemptible(id: String)

    public static func parse(_ params: JSON?) throws(BerthError) -> PreemptibleHorizonParams {
        var r = ParamReader(params)
        let host = r.string("host")
        let id = r.string("id")
        if (host == nil) == (id == nil) { r.fail("params", "give exactly one of host or id") }
        try r.finish()
        switch (host, id) {
        case (_, let id?): return .preemptible(id: id)
        case (let host?, nil): return .host(host)
        case (nil, nil): throw .invalidParam("params", "give exactly one of host or id")
        }
    }
}
