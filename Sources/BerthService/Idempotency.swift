import BerthCore
import BerthJSON
import BerthStore

/// A mutating call that carries an `idempotency_key`: its first result is stored in the same
/// transaction as its effect, so a retry after a lost reply returns that result and acts once.
public struct IdempotencyContext: Sendable {
    public var method: String
    public var key: String
    /// The params without the key, serialised canonically (sorted keys) for comparison.
    public var paramsText: String

    public init?(method: String, params: JSON?) {
        guard case .object(var o)? = params, let key = o["idempotency_key"]?.stringValue else { return nil }
        o["idempotency_key"] = nil
        self.method = method
        self.key = key
        self.paramsText = JSON.object(o).serialized()
    }

    func record(result: JSON, at: Timestamp, into c: inout Scheduler.Change) {
        c.mutation.idempotency = .init(
            method: method, key: key, params: paramsText, result: result.serialized(), createdAt: at)
        c.idempotencyResult = result
    }

    /// The result of an earlier identical call (still being written, `pending`, or in the store),
    /// or a conflict if the key was used differently.
    func replay(pending: (params: String, result: JSON)?, from store: BerthStore) throws(BerthError) -> JSON? {
        if let pending {
            try check(params: pending.params)
            return pending.result
        }
        guard let rec = try store.idempotencyRecord(method: method, key: key) else { return nil }
        try check(params: rec.params)
        guard let result = try? JSONParser.parse(rec.result) else {
            throw BerthError(.internalError, "stored result for idempotency_key '\(key)' is unreadable")
        }
        return result
    }

    private func check(params: String) throws(BerthError) {
        guard params == paramsText else {
            throw BerthError(
                .conflict, "idempotency_key '\(key)' was already used for \(method) with different params",
                data: ["rule": "idempotency_key_reuse"])
        }
    }
}
