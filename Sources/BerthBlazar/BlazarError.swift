import BerthContract
import BerthJSON
import BerthRPC

/// An error as Blazar's API answers it: the HTTP status, and a body
/// `{"error_code": status, "error_message": text, "error_name": status}` (Blazar puts the status
/// in `error_name` too). Berth's own facts (the contract's `reason`, `earliest_start`, credit
/// amounts, field errors) travel as extra members, which Blazar's clients ignore.
public struct BlazarError: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    public var extra: [String: JSON]

    public init(_ status: Int, _ message: String, extra: [String: JSON] = [:]) {
        self.status = status
        self.message = message
        self.extra = extra
    }

    public var json: JSON {
        var o = extra
        o["error_code"] = .int(Int64(status))
        o["error_message"] = .string(message)
        o["error_name"] = .int(Int64(status))
        return .object(o)
    }

    static func missing(_ names: [String]) -> BlazarError {
        BlazarError(400, "Missing parameter \(names.joined(separator: ", "))")
    }

    static func malformed(_ name: String, _ why: String? = nil) -> BlazarError {
        BlazarError(400, "Malformed parameter \(name)" + (why.map { " (\($0))" } ?? ""))
    }

    static func notFound(_ key: String, _ id: String) -> BlazarError {
        // Blazar prints the lookup as a Python dict.
        BlazarError(404, "Object with {'\(key)': '\(id)'} not found")
    }

    static func policy(_ action: String) -> BlazarError {
        BlazarError(403, "Policy doesn't allow blazar:\(action) to be performed")
    }

    /// A contract error, in the status Blazar gives the same failure. Capacity is Blazar's
    /// `NotEnoughHostsAvailable`, a 500 whose text clients match (`not enough (.*) available`).
    init(_ e: RPCError, notFound: (key: String, id: String)? = nil) {
        var extra: [String: JSON] = ["berth_message": .string(e.message)]
        if case .object(let d)? = e.data { for (k, v) in d { extra[k] = v } }
        switch RPCErrorCode(rawValue: e.code) {
        case .invalidParams?, .invalidRequest?, .parseError?:
            self.init(400, e.message, extra: extra)
        case .notFound?:
            if let notFound {
                self = .notFound(notFound.key, notFound.id)
                self.extra = extra
            } else {
                self.init(404, e.message, extra: extra)
            }
        case .noCapacity?:
            self.init(500, "Not enough hosts available", extra: extra)
        case .insufficientCredits?, .forbidden?, .policyViolation?:
            self.init(403, e.message, extra: extra)
        case .conflict?:
            self.init(409, e.message, extra: extra)
        case .upstreamError?:
            self.init(502, e.message, extra: extra)
        case .unavailable?:
            self.init(503, e.message, extra: extra)
        default:
            self.init(500, e.message, extra: extra)
        }
    }
}
