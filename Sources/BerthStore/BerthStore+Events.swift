import BerthCore
import BerthJSON
import GRDB

/// The event log, read back in pages (`events.list`).
extension BerthStore {
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
}
