import BerthCore
import BerthJSON
import BerthStore

/// Read-only queries served straight from SQLite (no need to queue behind the scheduler actor).
public struct StoreQueries: Sendable {
    let store: BerthStore

    public init(store: BerthStore) { self.store = store }

    public func eventsList(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try EventsListParams.parse(params)
        let items = try store.events(afterSeq: p.afterSeq, limit: p.limit, types: p.types)
        return [
            "items": .array(items.map(\.json)),
            "next_cursor": items.count == p.limit ? .int(items.last!.seq) : .null,
        ]
    }

    public func actionsList(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try ActionsListParams.parse(params)
        let rows = try store.actions(status: p.status, leaseID: p.leaseID, afterSeq: p.afterSeq, limit: p.limit)
        return [
            "items": .array(rows.map(\.action.json)),
            "next_cursor": rows.count == p.limit ? .string(String(rows.last!.seq)) : .null,
        ]
    }
}
