import BerthJSON

/// `lease.list` params: filters (project, status, a window the lease must overlap), a
/// `created_at:id` cursor and a page size.
public struct LeaseListParams: Sendable {
    public var projectID: String?
    public var status: LeaseStatus?
    public var from: Timestamp?
    public var to: Timestamp?
    /// The position to continue after (nil: from the start).
    public var after: (Timestamp, String)?
    public var limit: Int

    public static func parse(_ params: JSON?) throws(BerthError) -> LeaseListParams {
        var r = ParamReader(params)
        let project = r.string("project_id")
        let status = r.enumValue("status", LeaseStatus.self)
        let from = r.timestamp("from")
        let to = r.timestamp("to")
        let cursor = r.string("cursor")
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        let after = CreationCursor.parse(cursor, method: .leaseList, into: &r)
        if let from, let to, to <= from { r.fail("to", "must be after from") }
        try r.finish()
        return LeaseListParams(projectID: project, status: status, from: from, to: to, after: after, limit: limit)
    }
}
