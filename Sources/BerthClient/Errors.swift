import BerthContract
import BerthJSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A JSON-RPC error reply from berthd: `{"code", "message", "data": {"reason", ...}}`.
public struct RPCErrorResponse: Error, Sendable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSON?
    /// `data.reason` (`not_found`, `no_capacity`, ...), present on every berthd error.
    public var reason: String?

    public init(code: Int, message: String, data: JSON? = nil) {
        self.code = code
        self.message = message
        self.data = data
        self.reason = data?["reason"]?.stringValue
    }

    /// Reads the `error` member of a response. Lenient: a malformed error still becomes an error.
    public init(errorObject: JSON) {
        let code = errorObject["code"]?.intValue.map { Int(clamping: $0) } ?? 0
        let message = errorObject["message"]?.stringValue ?? errorObject.serialized()
        self.init(code: code, message: message, data: errorObject["data"])
    }

    /// `data.errors` of an invalid-params (-32602) error: which parameter is wrong and why.
    public var fieldErrors: [(path: String, message: String)] {
        guard let list = data?["errors"]?.arrayValue else { return [] }
        return list.map { e in
            (path: e["path"]?.stringValue ?? "", message: e["message"]?.stringValue ?? e.serialized())
        }
    }

    /// The contract's name for `code`; nil for a code the contract does not have.
    public var errorCode: RPCErrorCode? { RPCErrorCode(rawValue: code) }

    public var description: String {
        if let reason { return "\(message) (code \(code), \(reason))" }
        return "\(message) (code \(code))"
    }
}

/// Failures below JSON-RPC: the socket, or a peer that does not speak the protocol.
public enum BerthClientError: Error, Sendable, CustomStringConvertible {
    /// Could not connect to the socket at `path`; `errno` says why.
    case connect(path: String, errno: Int32)
    /// Reading or writing failed, or the daemon closed the connection.
    case io(String)
    /// The peer sent something that is not a JSON-RPC 2.0 reply or notification.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .connect(let path, let e):
            let hint: String
            switch e {
            case ENOENT:
                hint = "no socket there: is berthd running? (set --socket or BERTH_SOCKET if it listens elsewhere)"
            case ECONNREFUSED:
                hint = "connection refused: the socket exists but nothing accepts on it; is berthd running?"
            case EACCES, EPERM:
                hint =
                    "permission denied: your user may not open the socket; "
                    + "ask for a group that berthd maps to a role, or use sudo"
            case ENAMETOOLONG:
                hint = "socket path too long (a Unix socket path has at most \(unixPathCapacity - 1) bytes)"
            case ENOTDIR:
                hint = "a component of the path is not a directory"
            case ENOTSOCK:
                hint = "not a socket"
            case EAGAIN:
                hint = "berthd's listen queue is full; try again"
            default:
                hint = errnoDescription(e)
            }
            return "cannot connect to berthd at \(path): \(hint)"
        case .io(let m): return m
        case .protocolViolation(let m): return "protocol violation: \(m)"
        }
    }
}

/// sizeof(sockaddr_un.sun_path).
let unixPathCapacity: Int = MemoryLayout.size(ofValue: sockaddr_un().sun_path)

func errnoDescription(_ e: Int32) -> String {
    guard let p = strerror(e) else { return "errno \(e)" }
    return String(cString: p)
}
