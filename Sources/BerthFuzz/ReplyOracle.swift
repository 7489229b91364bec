import BerthContract
import BerthJSON

/// Decides whether `berthd`'s reply to one request line is what JSON-RPC 2.0 and the contract allow.
///
/// It is an oracle independent of `JSONRPCDispatcher`: it reads the request itself and works out
/// what must come back (nothing for a notification or a batch of only notifications, one response
/// object, or an array of them in request order), then checks the reply's envelope (`jsonrpc`,
/// exactly one of `result`/`error`, the echoed `id`) and every error object (a contract code with
/// its `data.reason`, a non-empty `message`, `data.errors` for -32602). A -32603 internal error is a
/// finding too: by the contract it means a bug, and hostile input must never reach one.
public enum ReplyOracle {
    /// Every error code of the contract (`schemas/openrpc.json`, `components.errors`) and the
    /// `data.reason` each must carry; -32600 also has `request_too_large` (the `ErrorData` schema).
    public static let reasons: [Int64: Set<String>] = {
        var out: [Int64: Set<String>] = [:]
        for code in RPCErrorCode.allCases { out[Int64(code.rawValue)] = [code.reason] }
        out[Int64(RPCErrorCode.invalidRequest.rawValue), default: []].insert("request_too_large")
        return out
    }()

    /// What one batch element or single request must get back.
    enum Expected: Equatable {
        /// A notification: no response.
        case none
        /// A response with this id (null when the request was not valid enough to have one).
        case response(id: JSON, invalidRequest: Bool)
    }

    /// Nesting allowed when reading a reply: a result may echo parameters that were already at the
    /// request's depth limit, a few levels further down.
    static let replyMaxDepth = 4 * JSONParser.defaultMaxDepth

    /// `nil` when `reply` is a valid answer to `request`, otherwise what is wrong with it.
    /// `allowInternalErrors` accepts -32603 (only for callers that inject faults on purpose).
    public static func problem(
        request: [UInt8], reply: [UInt8]?, maxBatchSize: Int = 1000, allowInternalErrors: Bool = false
    ) -> String? {
        let parsed: JSON
        do {
            parsed = try JSONParser.parse(request)
        } catch {
            // Not JSON: one -32700 error with a null id.
            return single(
                reply, expected: .response(id: .null, invalidRequest: false), code: -32700, allowInternalErrors)
        }
        guard case .array(let batch) = parsed else {
            let expected = expectation(for: parsed)
            let code: Int64? = if case .response(_, true) = expected { -32600 } else { nil }
            return single(reply, expected: expected, code: code, allowInternalErrors)
        }
        if batch.isEmpty || batch.count > maxBatchSize {
            // An empty or oversized batch is one invalid request, not an array.
            return single(
                reply, expected: .response(id: .null, invalidRequest: true), code: -32600, allowInternalErrors)
        }
        let wanted = batch.map(expectation(for:)).compactMap { e -> (id: JSON, invalid: Bool)? in
            if case .response(let id, let invalid) = e { return (id, invalid) }
            return nil
        }
        guard let reply else {
            return wanted.isEmpty ? nil : "no reply to a batch with \(wanted.count) request(s)"
        }
        if wanted.isEmpty { return "a batch of only notifications was answered: \(preview(reply))" }
        let value: JSON
        do {
            value = try JSONParser.parse(reply, maxDepth: replyMaxDepth)
        } catch {
            return "batch reply is not JSON (\(error)): \(preview(reply))"
        }
        guard case .array(let responses) = value else { return "a batch reply must be an array: \(preview(reply))" }
        guard responses.count == wanted.count else {
            return "batch reply has \(responses.count) responses for \(wanted.count) requests: \(preview(reply))"
        }
        for (k, (response, want)) in zip(responses, wanted).enumerated() {
            if let p = checkResponse(response, id: want.id, code: want.invalid ? -32600 : nil, allowInternalErrors) {
                return "batch response \(k): \(p)"
            }
        }
        return nil
    }

    /// What the dispatcher owes one parsed request object (or non-object).
    static func expectation(for value: JSON) -> Expected {
        guard case .object(let o) = value else { return .response(id: .null, invalidRequest: true) }
        var id: JSON? = nil
        if let raw = o["id"] {
            switch raw {
            case .string, .int, .double, .null: id = raw
            default: return .response(id: .null, invalidRequest: true)
            }
        }
        let valid: Bool = {
            guard o["jsonrpc"] == .string("2.0"), case .string = o["method"] else { return false }
            switch o["params"] {
            case nil, .array?, .object?: return true
            default: return false
            }
        }()
        if !valid { return .response(id: id ?? .null, invalidRequest: true) }
        guard let id else { return .none }
        return .response(id: id, invalidRequest: false)
    }

    private static func single(_ reply: [UInt8]?, expected: Expected, code: Int64?, _ allowInternal: Bool) -> String? {
        guard case .response(let id, _) = expected else {
            return reply.map { "a notification was answered: \(preview($0))" }
        }
        guard let reply else { return "no reply to a request that needs one" }
        let value: JSON
        do {
            value = try JSONParser.parse(reply, maxDepth: replyMaxDepth)
        } catch {
            return "reply is not JSON (\(error)): \(preview(reply))"
        }
        return checkResponse(value, id: id, code: code, allowInternal).map { "\($0): \(preview(reply))" }
    }

    /// One response object: envelope, echoed id, and (when given) the error code it must carry.
    static func checkResponse(_ value: JSON, id: JSON, code: Int64?, _ allowInternal: Bool) -> String? {
        guard case .object(let o) = value else { return "a response must be an object, got \(value.typeName)" }
        guard o["jsonrpc"] == .string("2.0") else { return "jsonrpc is not \"2.0\"" }
        let extra = Set(o.keys).subtracting(["jsonrpc", "result", "error", "id"])
        if !extra.isEmpty { return "unexpected members \(extra.sorted())" }
        guard let replyID = o["id"] else { return "id is missing" }
        guard sameID(replyID, id) else { return "id \(replyID.serialized()) does not echo \(id.serialized())" }
        switch (o["result"], o["error"]) {
        case (.some, .some): return "both result and error"
        case (nil, nil): return "neither result nor error"
        case (.some, nil):
            if let code { return "a result where error \(code) was due" }
            return nil
        case (nil, .some(let error)):
            return checkError(error, code: code, allowInternal)
        }
    }

    static func checkError(_ error: JSON, code wanted: Int64?, _ allowInternal: Bool) -> String? {
        guard case .object(let e) = error else { return "error is not an object" }
        guard case .int(let code) = e["code"] else { return "error.code is not an integer" }
        guard let reasons = reasons[code] else { return "error.code \(code) is not a contract code" }
        if let wanted, code != wanted { return "error.code \(code), expected \(wanted)" }
        if code == -32603 && !allowInternal { return "internal error (-32603): \(e["message"]?.stringValue ?? "?")" }
        guard case .string(let message) = e["message"], !message.isEmpty else {
            return "error.message is not a non-empty string"
        }
        guard case .string(let reason) = e["data"]?["reason"], reasons.contains(reason) else {
            return "error.data.reason does not match code \(code)"
        }
        if code == -32602 {
            guard case .array(let list) = e["data"]?["errors"], !list.isEmpty else {
                return "-32602 without data.errors"
            }
            for item in list {
                guard case .string = item["path"], case .string = item["message"] else {
                    return "data.errors entries need string path and message"
                }
            }
        }
        return nil
    }

    /// Ids are echoed as parsed: an integer as the same integer, any other number as the double it
    /// parsed to (which prints with a fraction or an exponent, so it reads back as a double).
    static func sameID(_ a: JSON, _ b: JSON) -> Bool { a == b }

    static func preview(_ bytes: [UInt8]) -> String {
        let s = String(decoding: bytes.prefix(300), as: UTF8.self)
        return bytes.count > 300 ? s + "… (\(bytes.count) bytes)" : s
    }
}
