import BerthContract
import BerthJSON

/// Who is on the other end of a connection, as the kernel reports it (`SO_PEERCRED`).
///
/// The values are those of the peer process at the time it called `connect(2)`; they cannot be forged
/// by the client, which is why roles are decided from them.
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }
}

/// A JSON-RPC error object. Every error carries a human `message` and a machine `data.reason`.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSON?

    public init(code: Int, message: String, data: JSON? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    /// `data.reason`, when present.
    public var reason: String? { data?["reason"]?.stringValue }

    public var description: String {
        "RPCError(\(code), \(message)\(reason.map { ", reason: \($0)" } ?? ""))"
    }

    /// The error as the `error` member of a JSON-RPC response.
    public var json: JSON {
        var o: [String: JSON] = ["code": .int(Int64(code)), "message": .string(message)]
        if let data { o["data"] = data }
        return .object(o)
    }

    /// An error with the contract's code and its `data.reason`, plus `data`'s other members.
    public init(_ code: RPCErrorCode, message: String, data: [String: JSON] = [:]) {
        var d = data
        d["reason"] = .string(code.reason)
        self.init(code: code.rawValue, message: message, data: .object(d))
    }

    /// -32700: the line is not JSON.
    public static func parseError(_ message: String) -> RPCError {
        RPCError(.parseError, message: message)
    }

    /// -32600: the JSON is not a valid JSON-RPC 2.0 request.
    public static func invalidRequest(_ message: String) -> RPCError {
        RPCError(.invalidRequest, message: message)
    }

    /// -32601: no such method.
    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(.methodNotFound, message: "method not found: \(method)", data: ["method": .string(method)])
    }

    /// -32602: the parameters are wrong; `data.errors` lists every bad parameter by path.
    public static func invalidParams(_ errors: [(path: String, message: String)]) -> RPCError {
        var message = "invalid params"
        if let first = errors.first {
            message += first.path.isEmpty ? ": \(first.message)" : ": \(first.path): \(first.message)"
            if errors.count > 1 { message += " (and \(errors.count - 1) more)" }
        }
        let list: [JSON] = errors.map { ["path": .string($0.path), "message": .string($0.message)] }
        return RPCError(.invalidParams, message: message, data: ["errors": .array(list)])
    }

    /// -32603: a bug or an unexpected failure inside the server.
    public static func internalError(_ message: String) -> RPCError {
        RPCError(.internalError, message: message)
    }

    /// -32600 for a request line longer than the configured limit (the connection is then closed).
    static func requestTooLarge(limit: Int) -> RPCError {
        RPCError(
            code: RPCErrorCode.invalidRequest.rawValue,
            message: "request line exceeds \(limit) bytes",
            data: ["reason": "request_too_large", "limit": .int(Int64(limit))]
        )
    }

    /// -32007 for a connection refused because `max_connections` (or the per-uid cap) is reached; sent
    /// with id null just before the connection is closed.
    static func tooManyConnections(limit: Int, perUID: Bool) -> RPCError {
        let rule = perUID ? "max_connections_per_uid" : "max_connections"
        let what = perUID ? "connections from this uid" : "connections"
        return RPCError(
            .unavailable, message: "too many \(what): the limit of \(limit) (\(rule)) is reached; try again later",
            data: ["rule": .string(rule)])
    }

    /// -32007 for a connection closed because nothing happened on it for `idle_timeout_s`.
    static func idleTimeout(seconds: Int64) -> RPCError {
        RPCError(
            .unavailable, message: "idle timeout: no request for \(seconds) s (idle_timeout_s); closing the connection",
            data: ["rule": "idle_timeout_s"])
    }

    /// -32600 for a request line started but not finished within `request_timeout_s` (a slow or
    /// stalled client); the connection is then closed.
    static func requestTimeout(seconds: Int64) -> RPCError {
        RPCError(
            .invalidRequest,
            message: "request timeout: the request line was not completed within \(seconds) s (request_timeout_s); "
                + "closing the connection",
            data: ["rule": "request_timeout_s"])
    }

    /// -32007 for requests that were already received when the server began shutting down.
    static let shuttingDown = RPCError(.unavailable, message: "server is shutting down")
}

/// Identifies one accepted connection for the life of the server process.
public struct RPCConnectionID: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { String(rawValue) }
}

/// Pushes JSON-RPC notifications (`{"jsonrpc":"2.0","method":...,"params":...}`) to the client of one
/// connection.
///
/// Notifications go through the same queue as that connection's replies, so they are written whole and
/// in the order they were sent, interleaved safely with replies. `send` never blocks; it returns `false`
/// once the connection is closed (or was closed because the client stopped reading), after which the
/// handler should stop sending (e.g. drop a subscription).
public struct RPCNotificationSink: Sendable {
    private let deliver: @Sendable (_ method: String, _ params: JSON) -> Bool

    /// A sink that hands every notification to `deliver` (tests, or handlers driven without a socket).
    public init(_ deliver: @escaping @Sendable (_ method: String, _ params: JSON) -> Bool) {
        self.deliver = deliver
    }

    /// A sink whose connection is already closed: every `send` returns `false`.
    public static var closed: RPCNotificationSink { RPCNotificationSink { _, _ in false } }

    /// Queues a notification; `params` should be an object or an array (JSON-RPC 2.0 §4.2).
    @discardableResult
    public func send(method: String, params: JSON) -> Bool {
        deliver(method, params)
    }
}

/// What a handler knows about the caller of one request.
public struct RPCContext: Sendable {
    public var peer: PeerCredentials
    public var connection: RPCConnectionID
    public var notifications: RPCNotificationSink

    public init(peer: PeerCredentials, connection: RPCConnectionID, notifications: RPCNotificationSink) {
        self.peer = peer
        self.connection = connection
        self.notifications = notifications
    }
}

/// The method side of the server. The transport validates JSON-RPC framing and structure; everything
/// about methods, parameters and roles is the handler's.
public protocol RPCHandler: Sendable {
    /// Called once per connection, before any request on it is handled. Returning an error (e.g. -32004
    /// `forbidden`) makes every request on this connection get that error; notifications get nothing.
    func admit(_ peer: PeerCredentials) -> RPCError?

    /// Handles one call or notification. `params` is `nil` when absent, otherwise an object or an array
    /// (the dispatcher rejects other types with -32600). For a notification the result is discarded.
    func handle(method: String, params: JSON?, context: RPCContext) async throws(RPCError) -> JSON

    /// Called once when a connection has closed and all its requests have finished.
    func connectionClosed(_ connection: RPCConnectionID) async

    /// True while the handler may still push notifications on this connection (e.g. it holds a
    /// subscription): such a connection is waiting for the server, not idle, so the idle timeout
    /// leaves it open. The default is false.
    func keepsConnectionOpen(_ connection: RPCConnectionID) -> Bool
}

extension RPCHandler {
    public func connectionClosed(_ connection: RPCConnectionID) async {}

    public func keepsConnectionOpen(_ connection: RPCConnectionID) -> Bool { false }
}
