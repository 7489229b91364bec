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

    func record(result: JSON, at: Timestamp, into m: inout BerthStore.Mutation) {
        m.idempotency = .init(method: method, key: key, params: paramsText, result: result.serialized(), createdAt: at)
    }

    /// The stored result of an earlier identical call, or a conflict if the key was used differently.
    func replay(from store: BerthStore) throws(BerthError) -> JSON? {
        guard let rec = try store.idempotencyRecord(method: method, key: key) else { return nil }
        guard rec.params == paramsText else {
            throw BerthError(
                .conflict, "idempotency_key '\(key)' was already used for \(method) with different params",
                data: ["rule": "idempotency_key_reuse"])
        }
        guard let result = try? JSONParser.parse(rec.result) else {
            throw BerthError(.internalError, "stored result for idempotency_key '\(key)' is unreadable")
        }
        return result
    }
}
