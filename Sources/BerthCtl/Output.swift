import BerthClient
import BerthJSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Human output: aligned tables for lists, `key: value` blocks for objects.
enum Output {
    static func out(_ text: String) {
        print(text)
    }

    /// Writes a line to standard error, after whatever standard output has buffered.
    static func err(_ text: String) {
        fflush(nil)
        var bytes = Array(text.utf8)
        bytes.append(0x0A)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }

    static func flush() { fflush(nil) }

    // MARK: - Values

    /// A scalar as a person reads it; nested values as compact JSON; null and absent as `-`.
    static func text(_ value: JSON?) -> String {
        guard let value else { return "-" }
        switch value {
        case .null: return "-"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.rounded() == d, abs(d) < 1e15 { return String(Int64(d)) }
            return "\(d)"
        case .string(let s): return s.isEmpty ? "\"\"" : s
        case .array, .object: return value.serialized()
        }
    }

    static func isScalar(_ value: JSON) -> Bool {
        switch value {
        case .array, .object: return false
        default: return true
        }
    }

    /// `k=v, k=v` for a flat object.
    static func inline(_ object: [String: JSON], separator: String = ", ") -> String {
        if object.isEmpty { return "-" }
        return object.keys.sorted().map { "\($0)=\(text(object[$0]))" }.joined(separator: separator)
    }

    // MARK: - Tables

    /// Columns padded to their widest cell; the last column is not padded.
    static func table(_ headers: [String], _ rows: [[String]]) -> [String] {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var s = ""
            for (i, cell) in cells.enumerated() {
                if i == cells.count - 1 {
                    s += cell
                } else {
                    s += cell + String(repeating: " ", count: widths[i] - cell.count + 2)
                }
            }
            while s.hasSuffix(" ") { s.removeLast() }
            return s
        }
        return [line(headers)] + rows.map(line)
    }

    /// Prints `items` as a table, or a note on standard error when there are none.
    static func printTable(_ headers: [String], _ items: [JSON], noun: String, row: (JSON) -> [String]) {
        if items.isEmpty {
            err("no \(noun) found")
            return
        }
        for l in table(headers, items.map(row)) { out(l) }
    }

    /// Tells where the next page starts when a list was cut short.
    static func noteCursor(_ result: JSON, option: String = "--cursor") {
        if let cursor = result["next_cursor"], !cursor.isNull {
            err("more results: repeat with \(option) \(text(cursor)) (or use --all)")
        }
    }

    // MARK: - Blocks

    /// An object as aligned `key: value` lines, nested values indented. Keys in `order` come first,
    /// then the others alphabetically.
    static func block(_ value: JSON, order: [String] = [], indent: Int = 0) -> [String] {
        let pad = String(repeating: " ", count: indent)
        guard case .object(let o) = value else { return [pad + text(value)] }
        var keys = order.filter { o[$0] != nil }
        // Then identity and state first, plain values next, nested values last.
        func rank(_ k: String) -> Int {
            if ["id", "name", "kind", "type", "status"].contains(k) { return 0 }
            return isScalar(o[k]!) ? 1 : 2
        }
        keys += o.keys.filter { !order.contains($0) }.sorted { (rank($0), $0) < (rank($1), $1) }
        let width = (keys.map(\.count).max() ?? 0) + 1
        var lines: [String] = []
        for key in keys {
            let v = o[key]!
            let label = pad + key + ":" + String(repeating: " ", count: width - key.count)
            switch v {
            case .object(let sub) where sub.isEmpty:
                lines.append(label + "-")
            case .object(let sub) where sub.values.allSatisfy(isScalar):
                lines.append(label + inline(sub))
            case .object:
                lines.append(pad + key + ":")
                lines += block(v, indent: indent + 2)
            case .array(let a) where a.isEmpty:
                lines.append(label + "-")
            case .array(let a) where a.allSatisfy(isScalar):
                lines.append(label + a.map { text($0) }.joined(separator: ", "))
            case .array(let a) where singleKey(a) != nil:
                // [{"model": "A100"}, {"model": "A100"}] and [{"host": "h1"}, ...] read best as a list of values.
                let k = singleKey(a)!
                lines.append(label + a.map { text($0[k]) }.joined(separator: ", "))
            case .array(let a):
                lines.append(pad + key + ":")
                lines += list(a, indent: indent + 2)
            default:
                lines.append(label + text(v))
            }
        }
        return lines
    }

    /// The one key every element of `items` has, when they are all one-key objects with a scalar value.
    static func singleKey(_ items: [JSON]) -> String? {
        guard case .object(let first)? = items.first, first.count == 1, let key = first.keys.first else { return nil }
        for item in items {
            guard case .object(let o) = item, o.count == 1, let v = o[key], isScalar(v) else { return nil }
        }
        return key
    }

    /// Array elements as `- ...` items.
    static func list(_ items: [JSON], indent: Int, order: [String] = []) -> [String] {
        let pad = String(repeating: " ", count: indent)
        var lines: [String] = []
        for item in items {
            switch item {
            case .object(let o) where !o.isEmpty && o.values.allSatisfy(isScalar):
                lines.append(pad + "- " + inline(o, separator: " "))
            case .object:
                var sub = block(item, order: order, indent: indent + 2)
                if !sub.isEmpty {
                    sub[0] = pad + "- " + sub[0].dropFirst(indent + 2)
                }
                lines += sub
            default:
                lines.append(pad + "- " + text(item))
            }
        }
        return lines
    }

    // MARK: - Errors

    /// `error: <message> (code <code>, <reason>)` and the details in `data`.
    static func errorLines(_ e: RPCErrorResponse) -> [String] {
        var lines = ["error: \(e.description)"]
        for f in e.fieldErrors {
            lines.append(f.path.isEmpty ? "  \(f.message)" : "  \(f.path): \(f.message)")
        }
        if case .object(let data)? = e.data {
            for key in data.keys.sorted() where key != "reason" && key != "errors" {
                lines.append("  \(key): \(text(data[key]))")
            }
        }
        return lines
    }
}

extension Output {
    /// Indented JSON, two spaces a level, keys sorted. (BerthJSON's `prettyPrinted()` does not indent object keys.)
    static func pretty(_ value: JSON, indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent + 1)
        let close = String(repeating: "  ", count: indent)
        switch value {
        case .array(let a) where !a.isEmpty:
            return "[\n" + a.map { pad + pretty($0, indent: indent + 1) }.joined(separator: ",\n") + "\n\(close)]"
        case .object(let o) where !o.isEmpty:
            return "{\n"
                + o.keys.sorted().map { key in
                    pad + JSON.string(key).serialized() + ": " + pretty(o[key]!, indent: indent + 1)
                }.joined(separator: ",\n") + "\n\(close)}"
        default:
            return value.serialized()
        }
    }
}
