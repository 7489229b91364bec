import BerthJSON

/// Which hosts a reservation may use: the contract's equality object or its Blazar-style expression.
///
/// Parsed once into a tree so a malformed filter is reported with a path at request time, and
/// evaluation over thousands of hosts does no JSON work.
public indirect enum PropertyFilter: Sendable, Hashable {
    case all
    case equalities([String: JSON])
    case and([PropertyFilter])
    case or([PropertyFilter])
    case not(PropertyFilter)
    case compare(ComparisonOperator, field: String, value: JSON)
    case membership(field: String, values: [JSON])

    public enum ComparisonOperator: String, Sendable, CaseIterable {
        case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">="
    }

    /// How deeply expressions may nest. A stored lease holds its filters inside several levels of
    /// its own, and must stay within the JSON parser's depth limit to be read back at start.
    public static let maxDepth = 32

    /// Parses the `properties` parameter; `path` prefixes error paths.
    public init(json: JSON, path: String) throws(BerthError) {
        switch json {
        case .null:
            self = .all
        case .object(let o):
            for (k, v) in o {
                if k.isEmpty { throw .invalidParam(path, "property names must not be empty") }
                switch v {
                case .string, .int, .double, .bool: continue
                default: throw .invalidParam("\(path).\(k)", "property values must be strings, numbers or booleans")
                }
            }
            self = o.isEmpty ? .all : .equalities(o)
        case .array:
            self = try PropertyFilter.parseExpression(json, path: path, depth: 1)
        default:
            throw .invalidParam(path, "expected an object of equalities or an expression array, got \(json.typeName)")
        }
    }

    private static func parseExpression(_ json: JSON, path: String, depth: Int) throws(BerthError) -> PropertyFilter {
        guard depth <= maxDepth else {
            throw .invalidParam(path, "expressions may nest at most \(maxDepth) levels deep")
        }
        guard let a = json.arrayValue, let op = a.first?.stringValue else {
            throw .invalidParam(path, "expected an expression array starting with an operator")
        }
        switch op {
        case "and", "or":
            guard a.count >= 2 else { throw .invalidParam(path, "'\(op)' needs at least one operand") }
            var parts: [PropertyFilter] = []
            for k in 1..<a.count { parts.append(try parseExpression(a[k], path: "\(path)[\(k)]", depth: depth + 1)) }
            return op == "and" ? .and(parts) : .or(parts)
        case "not":
            guard a.count == 2 else { throw .invalidParam(path, "'not' takes exactly one operand") }
            return .not(try parseExpression(a[1], path: "\(path)[1]", depth: depth + 1))
        case "in":
            guard a.count == 3 else { throw .invalidParam(path, "'in' takes a field and an array of values") }
            let field = try fieldName(a[1], path: "\(path)[1]")
            guard let values = a[2].arrayValue else {
                throw .invalidParam("\(path)[2]", "'in' needs an array of values")
            }
            for (k, v) in values.enumerated() where !isScalar(v) {
                throw .invalidParam("\(path)[2][\(k)]", "values must be strings, numbers or booleans")
            }
            return .membership(field: field, values: values)
        default:
            guard let cmp = ComparisonOperator(rawValue: op) else {
                throw .invalidParam(
                    "\(path)[0]", "unknown operator '\(op)'; expected one of ==, !=, <, <=, >, >=, in, and, or, not")
            }
            guard a.count == 3 else { throw .invalidParam(path, "'\(op)' takes a field and a value") }
            let field = try fieldName(a[1], path: "\(path)[1]")
            guard isScalar(a[2]) else { throw .invalidParam("\(path)[2]", "value must be a string, number or boolean") }
            return .compare(cmp, field: field, value: a[2])
        }
    }

    private static func isScalar(_ v: JSON) -> Bool {
        switch v {
        case .string, .int, .double, .bool: return true
        default: return false
        }
    }

    private static func fieldName(_ json: JSON, path: String) throws(BerthError) -> String {
        guard let s = json.stringValue, s.hasPrefix("$"), s.count > 1 else {
            throw .invalidParam(path, "expected a field reference such as \"$memory_mb\"")
        }
        return String(s.dropFirst())
    }

    public func matches(_ host: Host) -> Bool {
        switch self {
        case .all: return true
        case .equalities(let eq):
            for (k, v) in eq {
                guard let actual = host.field(k), PropertyFilter.compare(actual, v) == 0 else { return false }
            }
            return true
        case .and(let parts): return parts.allSatisfy { $0.matches(host) }
        case .or(let parts): return parts.contains { $0.matches(host) }
        case .not(let inner): return !inner.matches(host)
        case .membership(let field, let values):
            guard let actual = host.field(field) else { return false }
            return values.contains { PropertyFilter.compare(actual, $0) == 0 }
        case .compare(let op, let field, let value):
            guard let actual = host.field(field) else { return op == .ne }
            guard let c = PropertyFilter.compare(actual, value) else { return op == .ne }
            switch op {
            case .eq: return c == 0
            case .ne: return c != 0
            case .lt: return c < 0
            case .le: return c <= 0
            case .gt: return c > 0
            case .ge: return c >= 0
            }
        }
    }

    /// Numbers compare as numbers (also when a side is a numeric string: "4096" == 4096);
    /// everything else compares as text, so `true` equals `"true"`.
    static func compare(_ a: JSON, _ b: JSON) -> Int? {
        if let x = numeric(a), let y = numeric(b) { return x < y ? -1 : (x > y ? 1 : 0) }
        guard let s = text(a), let t = text(b) else { return nil }
        return s < t ? -1 : (s > t ? 1 : 0)
    }

    private static func numeric(_ v: JSON) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .string(let s): return Double(s)
        default: return nil
        }
    }

    private static func text(_ v: JSON) -> String? {
        switch v {
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        default: return nil
        }
    }

    /// The filter as the contract's JSON, for echoing requests back.
    public var json: JSON {
        switch self {
        case .all: return .object([:])
        case .equalities(let eq): return .object(eq)
        case .and(let p): return .array(["and"] + p.map(\.json))
        case .or(let p): return .array(["or"] + p.map(\.json))
        case .not(let f): return .array(["not", f.json])
        case .membership(let field, let values): return .array(["in", .string("$" + field), .array(values)])
        case .compare(let op, let field, let value): return .array([.string(op.rawValue), .string("$" + field), value])
        }
    }
}
