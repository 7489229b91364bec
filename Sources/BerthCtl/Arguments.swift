import ArgumentParser
import BerthCore
import BerthJSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A number of seconds, written as `600`, `90s`, `30m`, `2h`, `1d`, `1w` or combined (`1h30m`).
struct Seconds: ExpressibleByArgument, Sendable {
    var value: Int64

    init(_ value: Int64) { self.value = value }

    init?(argument: String) {
        guard let v = Seconds.parse(argument) else { return nil }
        value = v
    }

    static func parse(_ text: String) -> Int64? { DurationText.seconds(text) }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// `key=value`, for `--property`.
struct KeyValue: ExpressibleByArgument, Sendable {
    var key: String
    var value: String

    init?(argument: String) {
        guard let eq = argument.firstIndex(of: "="), eq != argument.startIndex else { return nil }
        key = String(argument[..<eq])
        value = String(argument[argument.index(after: eq)...])
    }
}

extension [KeyValue] {
    /// `{ key: value, ... }`, the later of repeated keys winning.
    var jsonObject: JSON {
        var o: [String: JSON] = [:]
        for kv in self { o[kv.key] = .string(kv.value) }
        return .object(o)
    }
}

/// Parses an option's JSON text. `-` reads standard input and `@path` reads a file.
@Sendable func parseJSONArgument(_ text: String) throws -> JSON {
    let bytes: [UInt8]
    if text == "-" {
        bytes = try readAll(fd: STDIN_FILENO, what: "standard input")
    } else if text.hasPrefix("@") {
        let path = String(text.dropFirst())
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        bytes = try readAll(fd: fd, what: path)
    } else {
        bytes = Array(text.utf8)
    }
    do {
        return try JSONParser.parse(bytes)
    } catch {
        throw ValidationError("invalid JSON: \(error)")
    }
}

private func readAll(fd: Int32, what: String) throws -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            out.append(contentsOf: chunk[0..<n])
        } else if n == 0 {
            return out
        } else if errno != EINTR {
            throw ValidationError("cannot read \(what): \(String(cString: strerror(errno)))")
        }
    }
}

/// The value of an environment variable, nil when unset or empty.
func environment(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    let s = String(cString: p)
    return s.isEmpty ? nil : s
}

extension JSON {
    /// Adds `key: value` to an object when `value` is not nil.
    /// (Careful: `JSON` is `ExpressibleByNilLiteral`, so a `nil` that type inference makes `JSON.null` is sent.)
    mutating func set(_ key: String, _ value: JSON?) {
        guard let value, case .object(var o) = self else { return }
        o[key] = value
        self = .object(o)
    }
}

extension Optional where Wrapped == String {
    var json: JSON? { map { .string($0) } }
}

extension Optional where Wrapped == Int {
    var json: JSON? { map { .int(Int64($0)) } }
}

extension Optional where Wrapped == Seconds {
    var json: JSON? { map { .int($0.value) } }
}
