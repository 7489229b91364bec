import BerthJSON

/// Reads one JSON object of parameters, collecting every problem with its path instead of stopping
/// at the first, and rejecting fields nobody asked for (typos must not be silently ignored).
public struct ParamReader {
    public let object: [String: JSON]
    public let path: String
    public private(set) var errors: [BerthError.FieldError] = []
    /// Keys asked for so far. A handful per object, so a list beats a hashed set (no hashing, one
    /// small allocation); it matters when a restart decodes every stored reservation.
    private var seen: [String] = []

    /// `json` must be an object (or absent, meaning no parameters).
    public init(_ json: JSON?, path: String = "") {
        self.path = path
        switch json {
        case .none, .some(.null):
            object = [:]
        case .some(.object(let o)):
            object = o
        case .some(let other):
            object = [:]
            errors.append(
                .init(path: path.isEmpty ? "params" : path, message: "expected an object, got \(other.typeName)"))
        }
    }

    public func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public mutating func fail(_ key: String, _ message: String) {
        errors.append(.init(path: fieldPath(key), message: message))
    }

    public mutating func fail(path: String, _ message: String) { errors.append(.init(path: path, message: message)) }

    public mutating func merge(_ other: [BerthError.FieldError]) { errors.append(contentsOf: other) }

    public mutating func has(_ key: String) -> Bool {
        if let v = object[key], !v.isNull { return true }
        return false
    }

    /// The raw value (marks the key as known). `null` counts as absent.
    public mutating func raw(_ key: String) -> JSON? {
        if !seen.contains(key) { seen.append(key) }
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    public mutating func string(_ key: String, required: Bool = false, nonEmpty: Bool = true, maxLength: Int = 255)
        -> String?
    {
        guard let v = raw(key) else {
            if required { fail(key, "is required") }
            return nil
        }
        guard let s = v.stringValue else {
            fail(key, "expected a string, got \(v.typeName)")
            return nil
        }
        if nonEmpty && s.isEmpty {
            fail(key, "must not be empty")
            return nil
        }
        if s.utf8.count > maxLength {
            fail(key, "must be at most \(maxLength) bytes")
            return nil
        }
        return s
    }

    public mutating func int(_ key: String, required: Bool = false, min: Int64? = nil, max: Int64? = nil) -> Int64? {
        guard let v = raw(key) else {
            if required { fail(key, "is required") }
            return nil
        }
        guard let i = v.intValue else {
            fail(key, "expected an integer, got \(v.typeName == "a number" ? "a fraction" : v.typeName)")
            return nil
        }
        if let min, i < min {
            fail(key, "must be at least \(min), got \(i)")
            return nil
        }
        if let max, i > max {
            fail(key, "must be at most \(max), got \(i)")
            return nil
        }
        return i
    }

    public mutating func bool(_ key: String) -> Bool? {
        guard let v = raw(key) else { return nil }
        guard let b = v.boolValue else {
            fail(key, "expected a boolean, got \(v.typeName)")
            return nil
        }
        return b
    }

    /// RFC 3339; `"now"` is accepted when `now` is given.
    public mutating func timestamp(_ key: String, required: Bool = false, now: Timestamp? = nil) -> Timestamp? {
        guard let s = string(key, required: required) else { return nil }
        if let now, s == "now" { return now }
        guard let t = Timestamp(rfc3339: s) else {
            fail(
                key,
                "expected an RFC 3339 timestamp such as 2030-01-01T10:00:00Z\(now != nil ? " or \"now\"" : ""), got \"\(s)\""
            )
            return nil
        }
        return t
    }

    public mutating func array(_ key: String, required: Bool = false) -> [JSON]? {
        guard let v = raw(key) else {
            if required { fail(key, "is required") }
            return nil
        }
        guard let a = v.arrayValue else {
            fail(key, "expected an array, got \(v.typeName)")
            return nil
        }
        return a
    }

    public mutating func stringArray(_ key: String) -> [String]? {
        guard let a = array(key) else { return nil }
        var out: [String] = []
        for (k, v) in a.enumerated() {
            guard let s = v.stringValue else {
                fail(path: "\(fieldPath(key))[\(k)]", "expected a string, got \(v.typeName)")
                continue
            }
            out.append(s)
        }
        return out
    }

    public mutating func enumValue<E: RawRepresentable & CaseIterable>(
        _ key: String, _ type: E.Type, required: Bool = false
    )
        -> E? where E.RawValue == String
    {
        guard let s = string(key, required: required) else { return nil }
        guard let e = E(rawValue: s) else {
            fail(key, "must be one of \(E.allCases.map { $0.rawValue }.joined(separator: ", ")), got \"\(s)\"")
            return nil
        }
        return e
    }

    /// Errors for unknown fields, in a stable order.
    public mutating func rejectUnknown() {
        // Sorting only when there is something to report: the usual object has no unknown field.
        guard object.keys.contains(where: { !seen.contains($0) }) else { return }
        for k in object.keys.sorted() where !seen.contains(k) {
            fail(k, "unknown field")
        }
    }

    /// Throws every collected problem at once, after checking for unknown fields.
    public mutating func finish() throws(BerthError) {
        rejectUnknown()
        if !errors.isEmpty { throw .invalidParams(errors) }
    }
}
