import BerthCore
import BerthJSON
import GRDB

/// Writing: one transaction per mutation or per group of them, and the idempotency records they carry.
extension BerthStore {
    /// One atomic change: everything in it is on disk when `commit` returns, or nothing is.
    public struct Mutation: Sendable {
        public var hosts: [Host] = []
        public var deletedHosts: [String] = []
        public var leases: [Lease] = []
        public var events: [LifecycleEvent] = []
        public var actions: [OutboxAction] = []
        public var idempotency: IdempotencyRecord?
        public var meta: [String: String] = [:]
        public var ledger: [LedgerEntry] = []
        public var preemptibles: [Preemptible] = []
        public init() {}
        public var isEmpty: Bool {
            hosts.isEmpty && deletedHosts.isEmpty && leases.isEmpty && events.isEmpty && actions.isEmpty
                && idempotency == nil && meta.isEmpty && ledger.isEmpty && preemptibles.isEmpty
        }
    }

    public struct IdempotencyRecord: Sendable {
        public var method: String
        public var key: String
        public var params: String
        public var result: String
        public var createdAt: Timestamp
        public init(method: String, key: String, params: String, result: String, createdAt: Timestamp) {
            self.method = method
            self.key = key
            self.params = params
            self.result = result
            self.createdAt = createdAt
        }
    }

    public func commit(_ m: Mutation) throws(BerthError) {
        if m.isEmpty { return }
        try write { db in try BerthStore.write(m, to: db) }
    }

    /// Several mutations in one transaction (group commit: one fsync for all of them), written in
    /// order. All of them are on disk when this returns, or none is.
    public func commit(_ mutations: [Mutation]) throws(BerthError) {
        let nonEmpty = mutations.filter { !$0.isEmpty }
        if nonEmpty.isEmpty { return }
        try write { db in
            for m in nonEmpty { try BerthStore.write(m, to: db) }
        }
    }

    private static func write(_ m: Mutation, to db: Database) throws {
        for h in m.hosts {
            try db.cachedStatement(
                sql: "INSERT INTO host (name, body) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body"
            ).execute(
                arguments: [h.name, h.json.serialized()])
        }
        for name in m.deletedHosts {
            try db.cachedStatement(sql: "DELETE FROM host WHERE name = ?").execute(arguments: [name])
        }
        for l in m.leases {
            try db.cachedStatement(
                sql: """
                    INSERT INTO lease (id, project_id, status, start, "end", created_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET status = excluded.status, start = excluded.start,
                        "end" = excluded."end", body = excluded.body
                    """
            ).execute(
                arguments: [
                    l.id, l.projectID, l.status.rawValue, l.start.seconds, l.end.seconds, l.createdAt.seconds,
                    l.json(internal: true).serialized(),
                ])
        }
        for p in m.preemptibles {
            try db.cachedStatement(
                sql: """
                    INSERT INTO preemptible (id, project_id, host, status, created_at, body) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body
                    """
            ).execute(
                arguments: [
                    p.id, p.projectID, p.host, p.status.rawValue, p.createdAt.seconds,
                    p.json(internal: true).serialized(),
                ])
        }
        for e in m.events {
            try db.cachedStatement(
                sql: "INSERT INTO event (seq, type, at, lease_id, body) VALUES (?, ?, ?, ?, ?)"
            ).execute(
                arguments: [e.seq, e.type, e.at.seconds, e.leaseID, e.json.serialized()])
        }
        for a in m.actions {
            try db.cachedStatement(
                sql: """
                    INSERT INTO action (id, kind, target, lease_id, status, attempts, last_error, created_at,
                        updated_at, due_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
                        last_error = excluded.last_error, updated_at = excluded.updated_at, due_at = excluded.due_at
                    """
            ).execute(
                arguments: [
                    a.id, a.kind, a.target, a.leaseID, a.status.rawValue, a.attempts, a.lastError,
                    a.createdAt.seconds, a.updatedAt.seconds, a.dueAt.seconds, JSON.object(a.payload).serialized(),
                ])
        }
        if let r = m.idempotency {
            try db.cachedStatement(
                sql: "INSERT INTO idempotency (method, key, params, result, created_at) VALUES (?, ?, ?, ?, ?)"
            ).execute(
                arguments: [r.method, r.key, r.params, r.result, r.createdAt.seconds])
        }
        for e in m.ledger {
            try db.cachedStatement(
                sql: "INSERT INTO ledger (seq, project_id, body) VALUES (?, ?, ?)"
            ).execute(
                arguments: [e.seq, e.projectID, e.json.serialized()])
        }
        for (k, v) in m.meta {
            try db.cachedStatement(
                sql: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
            ).execute(
                arguments: [k, v])
        }
    }

    public func idempotencyRecord(method: String, key: String) throws(BerthError) -> IdempotencyRecord? {
        try read { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT params, result, created_at FROM idempotency WHERE method = ? AND key = ?",
                    arguments: [method, key])
            else { return nil }
            return IdempotencyRecord(
                method: method, key: key, params: row["params"], result: row["result"],
                createdAt: Timestamp(seconds: row["created_at"]))
        }
    }
}
