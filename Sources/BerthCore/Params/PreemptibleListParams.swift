import BerthJSON

/// `preemptible.list` params: filters (project, host, status, Slurm node), a `created_at:id`
/// cursor and a page size.
public struct PreemptibleListParams: Sendable {
    public var projectID: String?
    public var host: String?
    public var status: PreemptibleStatus?
    public var slurmNode: String?
    /// The position to continue after (nil: from the start).
    public var after: (Timestamp, String)?
    public var limit: Int

    public static func parse(_ params: JSON?) throws(BerthError) -> PreemptibleListParams {
        var r = ParamReader(params)
        let project = r.string("project_id")
        let host = r.string("host")
        if let host, !Host.isValidName(host) {
            // No host can have this name: a filter by it is a mistake, not an empty list.
            r.fail("host", Host.invalidNameMessage)
        }
        let status = r.enumValue("status", PreemptibleStatus.self)
        let node = r.string("slurm_node")
        let cursor = r.string("cursor")
        let limit = Int(r.int("limit", min: 1, max: 1000) ?? 100)
        let after = CreationCursor.parse(cursor, method: .preemptibleList, into: &r)
        try r.finish()
        return PreemptibleListParams(
            projectID: project, host: host, status: status, slurmNode: node, after: after, limit: limit)
    }
}
