import GRDB

/// The schema, one migration per version; an existing database only ever moves forward.
extension BerthStore {
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
        // Hosts gain a stable integer id (Blazar's clients address hosts by it): existing hosts
        // take their row number, and `host_id_seq` remembers the highest id ever given, so an id
        // is never handed out twice, even after its host is deleted.
        m.registerMigration("v5-host-ids") { db in
            try db.execute(
                sql: """
                    UPDATE host SET body = json_set(body, '$.id', rowid) WHERE json_extract(body, '$.id') IS NULL;
                    INSERT INTO meta (key, value) SELECT 'host_id_seq', CAST(COALESCE(MAX(rowid), 0) AS TEXT) FROM host
                        WHERE true ON CONFLICT(key) DO NOTHING;
                    """)
        }
        return m
    }
}
