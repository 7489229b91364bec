import BerthJSON

/// `actions.list` params: filters (status, lease), a cursor (the outbox sequence number of the
/// last action of the previous page) and a page size.
public struct ActionsListParams: Sendable {
    public var status: ActionStatus?
    public var leaseID: String?
    public var afterSeq: Int64
    public var limit: Int

    public static func parse(_ params: JSON?) throws(BerthError) -> ActionsListParams {
        var r = ParamReader(params)
        let status = r.enumValue("status", ActionStatus.self)
        let lease = r.string("lease_id")
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        var after: Int64 = 0
        if let c = r.string("cursor") {
            if let v = Int64(c), v >= 0 {
                after = v
            } else {
                r.fail("cursor", "is not a cursor returned by actions.list")
            }
        }
        try r.finish()
        return ActionsListParams(status: status, leaseID: lease, afterSeq: after, limit: limit)
    }
}
