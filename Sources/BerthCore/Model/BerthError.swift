import BerthContract
import BerthJSON

/// A failure that maps one-to-one to a JSON-RPC error code of the contract (`RPCErrorCode`,
/// generated from `schemas/openrpc.json`).
///
/// Domain code throws these; the RPC layer turns them into error objects without translation tables.
public struct BerthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The contract's error codes, generated from it: each code has its one `data.reason`.
    public typealias Code = RPCErrorCode

    /// One bad parameter, addressed by a path such as `reservations[0].count`.
    public struct FieldError: Sendable, Equatable {
        public var path: String
        public var message: String
        public init(path: String, message: String) {
            self.path = path
            self.message = message
        }
    }

    public var code: Code
    public var message: String
    /// Extra fields of `data` besides `reason` (e.g. `earliest_start`).
    public var data: [String: JSON]

    public init(_ code: Code, _ message: String, data: [String: JSON] = [:]) {
        self.code = code
        self.message = message
        self.data = data
    }

    public var description: String { "\(message) (\(code.rawValue) \(code.reason))" }

    /// The contract's `data` object: the reason plus any extra fields.
    public var dataJSON: JSON {
        var d = data
        d["reason"] = .string(code.reason)
        return .object(d)
    }

    public static func invalidParams(_ errors: [FieldError]) -> BerthError {
        let message: String
        if errors.count == 1 {
            message = "invalid params: \(errors[0].path): \(errors[0].message)"
        } else {
            message = "invalid params: " + errors.map { "\($0.path): \($0.message)" }.joined(separator: "; ")
        }
        return BerthError(
            .invalidParams, message,
            data: ["errors": .array(errors.map { ["path": .string($0.path), "message": .string($0.message)] })])
    }

    public static func invalidParam(_ path: String, _ message: String) -> BerthError {
        invalidParams([FieldError(path: path, message: message)])
    }

    public static func notFound(_ what: String) -> BerthError { BerthError(.notFound, what) }
    public static func conflict(_ what: String) -> BerthError { BerthError(.conflict, what) }
}
