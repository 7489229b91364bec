import BerthCore
import BerthJSON
import GRDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Durable state in SQLite: WAL journal, `synchronous=FULL`, versioned migrations.
///
/// Every mutation is one transaction, committed before the caller replies, so an acknowledged
/// change survives a crash. Leases and hosts are stored as JSON documents beside the columns the
/// queries need; the in-memory model is rebuilt from them at start.
public final class BerthStore: Sendable {
    public let path: String
    private let pool: DatabasePool

    /// Opens (creating if needed) `<directory>/berth.sqlite` and migrates it.
    ///
    /// An existing file is inspected read-only first and refused, never repaired, replaced or
    /// migrated, when it is not a SQLite database, is not Berth's, was written by a newer berthd, or
    /// (with `checkIntegrity`) fails SQLite's `quick_check`: the operator decides what to do with
    /// it (restore a backup, or move it away to start empty). The error names the file and the
    /// problem.
    public init(directory: String, checkIntegrity: Bool = true) throws(BerthError) {
        path = directory.hasSuffix("/") ? directory + "berth.sqlite" : directory + "/berth.sqlite"
        try BerthStore.inspectExisting(path, checkIntegrity: checkIntegrity)
        var config = Configuration()
        config.label = "berth"
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // GRDB switches a pool's writer to `synchronous = NORMAL` after `prepareDatabase` has
            // run: in WAL mode that skips the fsync at each commit, and a power cut could lose
            // acknowledged writes. Put FULL back on the one connection that writes, and check it.
            let synchronous = try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                return try Int.fetchOne(db, sql: "PRAGMA synchronous")
            }
            guard synchronous == 2 else {
                throw BerthError(.unavailable, "database at \(path) refuses synchronous = FULL (got \(synchronous ?? -1))")
            }
            try BerthStore.migrator.migrate(pool)
            let mode = try pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
            guard mode?.lowercased() == "wal" else {
                throw BerthError(.unavailable, "database at \(path) is not in WAL mode (\(mode ?? "?"))")
            }
        } catch let e as BerthError {
            throw e
        } catch {
            throw BerthError(.unavailable, "cannot open database at \(path): \(error)")
        }
    }

    /// What an operator should do with a database berthd refuses.
    static let refusalAdvice =
        "berthd has not changed it; restore it from a backup, or move it (with its -wal and -shm files) "
        + "away to start with an empty state"

    /// Refuses an existing database that berthd must not open for writing (see `init`). Reads only.
    static func inspectExisting(_ path: String, checkIntegrity: Bool) throws(BerthError) {
        let header = try readHeader(path)
        // Missing or empty: SQLite creates a new database (an empty file is what an interrupted
        // first start leaves).
        if header.isEmpty { return }
        let magic = Array("SQLite format 3\0".utf8)
        guard header.count >= 100, Array(header.prefix(16)) == magic else {
            throw BerthError(
                .unavailable,
                "\(path) is not a SQLite database (corrupt, truncated or not Berth's); \(refusalAdvice)",
                data: ["storage_fault": "corrupt"])
        }
        var config = Configuration()
        config.readonly = true
        config.label = "berth-inspect"
        do {
            let queue = try DatabaseQueue(path: path, configuration: config)
            defer { try? queue.close() }
            try queue.read { db in
                let tables = try String.fetchAll(
                    db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                if tables.isEmpty { return }
                guard tables.contains("grdb_migrations") else {
                    throw BerthError(
                        .unavailable,
                        "\(path) holds tables (\(tables.sorted().prefix(5).joined(separator: ", "))) but no Berth schema "
                            + "history: it is not Berth's database; \(refusalAdvice)",
                        data: ["storage_fault": "corrupt"])
                }
                let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
                let known = Set(migrator.migrations)
                let unknown = applied.filter { !known.contains($0) }
                guard unknown.isEmpty else {
                    throw BerthError(
                        .unavailable,
                        "\(path) was written by a newer berthd (schema \(unknown.joined(separator: ", ")) is unknown to "
                            + "this one); run the newer berthd, or restore a backup made for this version",
                        data: ["storage_fault": "corrupt"])
                }
                if checkIntegrity {
                    let report = try String.fetchAll(db, sql: "PRAGMA quick_check(5)")
                    guard report == ["ok"] else {
                        throw BerthError(
                            .unavailable,
                            "\(path) is corrupt (SQLite quick_check: \(report.joined(separator: "; "))); \(refusalAdvice)",
                            data: ["storage_fault": "corrupt"])
                    }
                }
            }
        } catch let e as BerthError {
            throw e
        } catch let e as DatabaseError where e.resultCode == .SQLITE_CORRUPT || e.resultCode == .SQLITE_NOTADB {
            throw BerthError(
                .unavailable, "\(path) is corrupt (\(e.message ?? "\(e.resultCode)")); \(refusalAdvice)",
                data: ["storage_fault": "corrupt"])
        } catch {
            throw BerthError(.unavailable, "cannot inspect database at \(path): \(error)", data: ["storage_fault": "io_error"])
        }
    }

    /// The first 100 bytes of the file (SQLite's header), or none when it is missing or empty.
    private static func readHeader(_ path: String) throws(BerthError) -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return [] }
            throw BerthError(
                .unavailable, "cannot read database at \(path): \(String(cString: strerror(errno)))",
                data: ["storage_fault": "io_error"])
        }
        defer { _ = Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 100)
        var got = 0
        while got < buffer.count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                throw BerthError(
                    .unavailable, "cannot read database at \(path): \(String(cString: strerror(errno)))",
                    data: ["storage_fault": "io_error"])
            }
            if n == 0 { break }
            got += n
        }
        return Array(buffer.prefix(got))
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE host (name TEXT PRIMARY KEY, body TEXT NOT NULL);
                    CREATE TABLE lease (
                        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, status TEXT NOT NULL,
                        start INTEGER NOT NULL, "end" INTEGER NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL);
                    CREATE INDEX lease_project ON lease(project_id, created_at);
                    CREATE TABLE event (
                        seq INTEGER PRIMARY KEY, type TEXT NOT NULL, at INTEGER NOT NULL, lease_id TEXT, body TEXT NOT NULL);
                    CREATE TABLE action (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                        target TEXT NOT NULL, lease_id TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL,
                        last_error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                        due_at INTEGER NOT NULL, payload TEXT NOT NULL);
                    CREATE INDEX action_status ON action(status, due_at);
                    CREATE INDEX action_lease ON action(lease_id);
                    CREATE TABLE idempotency (
                        method TEXT NOT NULL, key TEXT NOT NULL, params TEXT NOT NULL, result TEXT NOT NULL,
                        created_at INTEGER NOT NULL, PRIMARY KEY (method, key));
                    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    """)
        }
        m.registerMigration("v2-credits") { db in
            try db.execute(
                sql: """
                    CREATE TABLE ledger (seq INTEGER PRIMARY KEY, project_id TEXT NOT NULL, body TEXT NOT NULL);
                    CREATE INDEX ledger_project ON ledger(project_id, seq);
                    """)
        }
        m.registerMigration("v3-preemptibles") { db in
            try db.execute(
                sql: """
                    CREATE TABLE preemptible (
                        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, host TEXT NOT NULL, status TEXT NOT NULL,
                        created_at INTEGER NOT NULL, body TEXT NOT NULL);
                    CREATE INDEX preemptible_host ON preemptible(host, status);
                    """)
        }
        m.registerMigration("v4-action-target") { db in
            try db.execute(sql: "CREATE INDEX action_target ON action(target, seq)")
        }
        return m
    }

    /// Everything the scheduler needs in memory at start.
    public struct Snapshot: Sendable {
        public var hosts: [Host] = []
        public var leases: [Lease] = []
        public var lastEventSeq: Int64 = 0
        public var meta: [String: String] = [:]
        /// Every credit ledger entry, in `seq` order (the ledger is rebuilt by replaying them).
        public var ledger: [LedgerEntry] = []
        public var preemptibles: [Preemptible] = []
    }

    /// Reads everything in one read transaction (one consistent state). The JSON documents are
    /// decoded on every core while this thread keeps reading rows (`DocumentDecoder`); a restart
    /// with a million allocations spends most of its loading time there.
    public func loadSnapshot() throws(BerthError) -> Snapshot {
        try read { db in
            var s = Snapshot()
            s.hosts = try DocumentDecoder.decodeAll(
                db, sql: "SELECT rowid, body FROM host ORDER BY name", Host.init(json:),
                unreadable: { rowid in "stored host \(try String.fetchOne(db, sql: "SELECT name FROM host WHERE rowid = ?", arguments: [rowid]) ?? "?") is unreadable" })
            // In rowid order (a plain table scan) and sorted here by (created_at, id), the order
            // leases are listed and added to the calendar in; an ORDER BY would make SQLite sort the
            // whole table, bodies included, before the first row.
            s.leases = try DocumentDecoder.decodeAll(
                db, sql: "SELECT rowid, body FROM lease", Lease.init(json:),
                unreadable: { rowid in "stored lease \(try String.fetchOne(db, sql: "SELECT id FROM lease WHERE rowid = ?", arguments: [rowid]) ?? "?") is unreadable" })
            DocumentDecoder.sortByCreation(&s.leases) { ($0.createdAt, $0.id) }
            s.preemptibles = try DocumentDecoder.decodeAll(
                db, sql: "SELECT rowid, body FROM preemptible", Preemptible.init(json:),
                unreadable: { rowid in "stored preemptible \(try String.fetchOne(db, sql: "SELECT id FROM preemptible WHERE rowid = ?", arguments: [rowid]) ?? "?") is unreadable" })
            DocumentDecoder.sortByCreation(&s.preemptibles) { ($0.createdAt, $0.id) }
            s.lastEventSeq = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM event") ?? 0
            // seq is the rowid: this scan is already in seq order.
            s.ledger = try DocumentDecoder.decodeAll(
                db, sql: "SELECT seq, body FROM ledger ORDER BY seq", LedgerEntry.init(json:),
                unreadable: { seq in "stored ledger entry \(seq) is unreadable" })
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM meta") {
                s.meta[row["key"]] = row["value"]
            }
            return s
        }
    }

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
                sql: "INSERT INTO host (name, body) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body").execute(
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
                    """).execute(
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
                    """).execute(
                arguments: [
                    p.id, p.projectID, p.host, p.status.rawValue, p.createdAt.seconds, p.json(internal: true).serialized(),
                ])
        }
        for e in m.events {
            try db.cachedStatement(
                sql: "INSERT INTO event (seq, type, at, lease_id, body) VALUES (?, ?, ?, ?, ?)").execute(
                arguments: [e.seq, e.type, e.at.seconds, e.leaseID, e.json.serialized()])
        }
        for a in m.actions {
            try db.cachedStatement(
                sql: """
                    INSERT INTO action (id, kind, target, lease_id, status, attempts, last_error, created_at,
                        updated_at, due_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
                        last_error = excluded.last_error, updated_at = excluded.updated_at, due_at = excluded.due_at
                    """).execute(
                arguments: [
                    a.id, a.kind, a.target, a.leaseID, a.status.rawValue, a.attempts, a.lastError,
                    a.createdAt.seconds, a.updatedAt.seconds, a.dueAt.seconds, JSON.object(a.payload).serialized(),
                ])
        }
        if let r = m.idempotency {
            try db.cachedStatement(
                sql: "INSERT INTO idempotency (method, key, params, result, created_at) VALUES (?, ?, ?, ?, ?)").execute(
                arguments: [r.method, r.key, r.params, r.result, r.createdAt.seconds])
        }
        for e in m.ledger {
            try db.cachedStatement(
                sql: "INSERT INTO ledger (seq, project_id, body) VALUES (?, ?, ?)").execute(
                arguments: [e.seq, e.projectID, e.json.serialized()])
        }
        for (k, v) in m.meta {
            try db.cachedStatement(
                sql: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").execute(
                arguments: [k, v])
        }
    }

    public func idempotencyRecord(method: String, key: String) throws(BerthError) -> IdempotencyRecord? {
        try read { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT params, result, created_at FROM idempotency WHERE method = ? AND key = ?",
                arguments: [method, key])
            else { return nil }
            return IdempotencyRecord(
                method: method, key: key, params: row["params"], result: row["result"],
                createdAt: Timestamp(seconds: row["created_at"]))
        }
    }

    /// Events after `afterSeq` in order; `types` are patterns such as `lease.*`.
    public func events(afterSeq: Int64, limit: Int, types: [String]) throws(BerthError) -> [LifecycleEvent] {
        try read { db in
            var sql = "SELECT body FROM event WHERE seq > ?"
            var args: [any DatabaseValueConvertible] = [afterSeq]
            if !types.isEmpty {
                var clauses: [String] = []
                for t in types {
                    if t == "*" {
                        clauses.append("1")
                    } else if t.hasSuffix(".*") {
                        clauses.append("substr(type, 1, ?) = ?")
                        let prefix = String(t.dropLast(1))
                        args.append(prefix.utf8.count)
                        args.append(prefix)
                    } else {
                        clauses.append("type = ?")
                        args.append(t)
                    }
                }
                sql += " AND (" + clauses.joined(separator: " OR ") + ")"
            }
            sql += " ORDER BY seq LIMIT ?"
            args.append(limit)
            return try String.fetchAll(db, sql: sql, arguments: StatementArguments(args)).compactMap { body in
                guard let j = try? JSONParser.parse(body) else { return nil }
                return LifecycleEvent(json: j)
            }
        }
    }

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
    public func deliverableActions(now: Timestamp, limit: Int, hooks: Bool? = nil) throws(BerthError) -> [OutboxAction] {
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
            Set(try String.fetchAll(
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

    /// A consistent online copy of the database (SQLite backup API), e.g. for operators' backups.
    public func backup(to path: String) throws(BerthError) {
        do {
            let target = try DatabaseQueue(path: path)
            try pool.backup(to: target)
        } catch {
            throw BerthError(.unavailable, "backup to \(path) failed: \(error)")
        }
    }

    private func read<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
        do {
            return try pool.read(body)
        } catch let e as BerthError {
            throw e
        } catch {
            throw BerthStore.map(error)
        }
    }

    private func write<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
        do {
            return try pool.write(body)
        } catch let e as BerthError {
            throw e
        } catch {
            var e = BerthStore.map(error)
            // SQLite reports a write refused by a read-only file system (EROFS) as an I/O error.
            if e.data["storage_fault"] == "io_error", fileSystemIsReadOnly {
                e.data["storage_fault"] = "read_only"
                e.message += " (the file system is read-only)"
            }
            throw e
        }
    }

    /// The writer connection's `PRAGMA synchronous` (2 = FULL: every commit is fsynced).
    func writerSynchronousMode() throws(BerthError) -> Int {
        try write { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// True when the database's file system is mounted read-only (statvfs `ST_RDONLY`).
    var fileSystemIsReadOnly: Bool {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { return false }
        return fs.f_flag & 1 != 0  // ST_RDONLY
    }

    /// Disk full, read-only, locked, corrupt or I/O trouble means "unavailable" (retry later, or
    /// ask the operator); the rest is a bug. `data.storage_fault` says which, for clients and for
    /// `system.health`.
    static func map(_ error: any Error) -> BerthError {
        if let e = error as? DatabaseError {
            let detail = e.message ?? "\(e.resultCode)"
            let fault: String? =
                switch e.resultCode {
                case .SQLITE_FULL: "full"
                case .SQLITE_READONLY: "read_only"
                case .SQLITE_IOERR, .SQLITE_CANTOPEN: "io_error"
                case .SQLITE_BUSY, .SQLITE_LOCKED: "busy"
                case .SQLITE_CORRUPT, .SQLITE_NOTADB: "corrupt"
                default: nil
                }
            if let fault {
                return BerthError(.unavailable, "storage unavailable: \(detail)", data: ["storage_fault": .string(fault)])
            }
            return BerthError(.internalError, "storage error: \(detail)")
        }
        return BerthError(.internalError, "storage error: \(error)")
    }
}

extension LifecycleEvent {
    public init?(json: JSON) {
        guard let seq = json["seq"]?.intValue, let type = json["type"]?.stringValue,
            let at = json["at"]?.stringValue.flatMap(Timestamp.init(rfc3339:))
        else { return nil }
        self.init(
            seq: seq, type: type, at: at, leaseID: json["lease_id"]?.stringValue,
            projectID: json["project_id"]?.stringValue, host: json["host"]?.stringValue,
            actionID: json["action_id"]?.stringValue, preemptibleID: json["preemptible_id"]?.stringValue,
            data: json["data"]?.objectValue ?? [:])
    }
}
