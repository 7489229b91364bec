import BerthCore
import BerthJSON
import GRDB

/// The outbox: actions owed to the cloud and to hooks, their delivery order and state.
extension BerthStore {
    public func actions(status: ActionStatus?, leaseID: String?, afterSeq: Int64, limit: Int) throws(BerthError)
        -> [(seq: Int64, action: OutboxAction)]
    {
        try read { db in
            var sql = "SELECT * FROM action WHERE seq > ?"
            var args: [any DatabaseValueConvertible] = [afterSeq]
            if let status {
                sql += " AND status = ?"
                args.append(status.rawValue)
            }
            if let leaseID {
                sql += " AND lease_id = ?"
                args.append(leaseID)
            }
            sql += " ORDER BY seq LIMIT ?"
            args.append(limit)
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map { row in
                (row["seq"], BerthStore.action(from: row))
            }
        }
    }

    /// Actions a delivery worker should attempt now (pending and due, or left running by a crash).
    /// `hooks`: true for local hook runs only (`hook.*`), false for everything else, nil for all;
    /// so a slow hook never holds up what the cloud is owed, nor the reverse.
    ///
    /// Actions on one target (a lease, a preemptible) are delivered in the order they were owed: one
    /// waits while an earlier one on the same target is undelivered, so a lease's end never reaches
    /// the cloud before its start (say, while the start is backing off through an outage).
    public func deliverableActions(now: Timestamp, limit: Int, hooks: Bool? = nil) throws(BerthError) -> [OutboxAction]
    {
        let kindFilter = hooks.map { $0 ? " AND a.kind LIKE 'hook.%'" : " AND a.kind NOT LIKE 'hook.%'" } ?? ""
        return try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT a.* FROM action a WHERE a.status IN ('pending', 'running') AND a.due_at <= ?\(kindFilter)
                    AND NOT EXISTS (
                        SELECT 1 FROM action b WHERE b.target = a.target AND b.seq < a.seq
                        AND b.status IN ('pending', 'running') AND (b.kind LIKE 'hook.%') = (a.kind LIKE 'hook.%'))
                    ORDER BY a.seq LIMIT ?
                    """,
                arguments: [now.seconds, limit]
            ).map(BerthStore.action(from:))
        }
    }

    /// Outbox totals for metrics: actions per status, and retries (attempts beyond the first) over all actions.
    public func actionStats() throws(BerthError) -> (byStatus: [String: Int], retries: Int64) {
        try read { db in
            var byStatus: [String: Int] = [:]
            var retries: Int64 = 0
            for row in try Row.fetchAll(
                db, sql: "SELECT status, COUNT(*) AS n, SUM(MAX(attempts - 1, 0)) AS r FROM action GROUP BY status")
            {
                byStatus[row["status"]] = row["n"]
                retries += (row["r"] as Int64?) ?? 0
            }
            return (byStatus, retries)
        }
    }

    /// Leases with actions not yet delivered (pending, running, or failed for good).
    public func leasesWithUndeliveredActions() throws(BerthError) -> Set<String> {
        try read { db in
            Set(
                try String.fetchAll(
                    db, sql: "SELECT DISTINCT lease_id FROM action WHERE status != 'done' AND lease_id IS NOT NULL"))
        }
    }

    /// The earliest due time of a pending action, so the worker knows when to wake.
    public func nextActionDue() throws(BerthError) -> Timestamp? {
        try read { db in
            try Int64.fetchOne(db, sql: "SELECT MIN(due_at) FROM action WHERE status IN ('pending', 'running')")
                .map(Timestamp.init(seconds:))
        }
    }

    /// Updates an action's delivery state (status, attempts, error, next due time).
    public func updateAction(_ a: OutboxAction, events: [LifecycleEvent] = []) throws(BerthError) {
        var m = Mutation()
        m.actions = [a]
        m.events = events
        try commit(m)
    }

    static func action(from row: Row) -> OutboxAction {
        let payloadText: String = row["payload"]
        var a = OutboxAction(
            id: row["id"], kind: row["kind"], target: row["target"], leaseID: row["lease_id"],
            createdAt: Timestamp(seconds: row["created_at"]),
            payload: (try? JSONParser.parse(payloadText))?.objectValue ?? [:])
        a.status = ActionStatus(rawValue: row["status"]) ?? .pending
        a.attempts = row["attempts"]
        a.lastError = row["last_error"]
        a.updatedAt = Timestamp(seconds: row["updated_at"])
        a.dueAt = Timestamp(seconds: row["due_at"])
        return a
    }
}
