import BerthCore
import BerthJSON
import GRDB

/// Reading the whole state at start.
extension BerthStore {
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
                unreadable: { rowid in
                    "stored host \(try String.fetchOne(db, sql: "SELECT name FROM host WHERE rowid = ?", arguments: [rowid]) ?? "?") is unreadable"
                })
            // In rowid order (a plain table scan) and sorted here by (created_at, id), the order
            // leases are listed and added to the calendar in; an ORDER BY would make SQLite sort the
            // whole table, bodies included, before the first row.
            s.leases = try DocumentDecoder.decodeAll(
                db, sql: "SELECT rowid, body FROM lease", Lease.init(json:),
                unreadable: { rowid in
                    "stored lease \(try String.fetchOne(db, sql: "SELECT id FROM lease WHERE rowid = ?", arguments: [rowid]) ?? "?") is unreadable"
                })
            DocumentDecoder.sortByCreation(&s.leases) { ($0.createdAt, $0.id) }
            s.preemptibles = try DocumentDecoder.decodeAll(
                db, sql: "SELECT rowid, body FROM preemptible", Preemptible.init(json:),
                unreadable: { rowid in
                    "stored preemptible \(try String.fetchOne(db, sql: "SELECT id FROM preemptible WHERE rowid = ?", arguments: [rowid]) ?? "?") is unreadable"
                })
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
}
