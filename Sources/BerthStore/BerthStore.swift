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
                throw BerthError(
                    .unavailable, "database at \(path) refuses synchronous = FULL (got \(synchronous ?? -1))")
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
            throw BerthError(
                .unavailable, "cannot inspect database at \(path): \(error)", data: ["storage_fault": "io_error"])
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

    /// A consistent online copy of the database (SQLite backup API), e.g. for operators' backups.
    public func backup(to path: String) throws(BerthError) {
        do {
            let target = try DatabaseQueue(path: path)
            try pool.backup(to: target)
        } catch {
            throw BerthError(.unavailable, "backup to \(path) failed: \(error)")
        }
    }

    /// A read transaction with storage errors mapped (`map`); the BerthStore+ extensions use it too.
    func read<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
        do {
            return try pool.read(body)
        } catch let e as BerthError {
            throw e
        } catch {
            throw BerthStore.map(error)
        }
    }

    /// A write transaction with storage errors mapped, a read-only file system named as such.
    func write<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
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
                return BerthError(
                    .unavailable, "storage unavailable: \(detail)", data: ["storage_fault": .string(fault)])
            }
            return BerthError(.internalError, "storage error: \(detail)")
        }
        return BerthError(.internalError, "storage error: \(error)")
    }
}
