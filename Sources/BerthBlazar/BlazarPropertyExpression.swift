import BerthJSON

/// Blazar's `hypervisor_properties` and `resource_properties`: JSON *strings* holding
/// `["op", "$key", "value"]` or `["and"|"or", expr, ...]`, empty for none. Berth's expression
/// language is the same shape; only the names differ: Blazar's `=` is `==`, and the hypervisor's
/// `$local_gb` and `$hypervisor_hostname` are a Berth host's `$disk_gb` and `$name`.
enum BlazarPropertyExpression {
    /// Berth's `properties` for a reservation (nil: any host), from the two strings.
    static func filter(hypervisor: JSON?, resource: JSON?) throws(BlazarError) -> JSON? {
        let parts = [
            try parse(hypervisor, field: "hypervisor_properties"), try parse(resource, field: "resource_properties"),
        ].compactMap { $0 }
        switch parts.count {
        case 0: return nil
        case 1: return parts[0]
        default: return .array(["and"] + parts)
        }
    }

    static func parse(_ value: JSON?, field: String) throws(BlazarError) -> JSON? {
        guard let value, !value.isNull else { return nil }
        let expression: JSON
        switch value {
        case .string(let s):
            if s.allSatisfy(\.isWhitespace) { return nil }
            do throws(JSONParseError) {
                expression = try JSONParser.parse(s)
            } catch {
                throw BlazarError.malformed(field, "not JSON: \(error)")
            }
        case .array:
            expression = value  // python-chi and scripts sometimes send the list itself
        default:
            throw BlazarError.malformed(field, "expected a JSON string")
        }
        if case .array(let a) = expression, a.isEmpty { return nil }
        return try translate(expression, field: field)
    }

    static func translate(_ e: JSON, field: String) throws(BlazarError) -> JSON {
        guard case .array(let a) = e, let op = a.first?.stringValue else {
            throw BlazarError.malformed(field, "expected [\"op\", \"$key\", \"value\"] or [\"and\", ...]")
        }
        switch op {
        case "and", "or":
            var out: [JSON] = [.string(op)]
            for sub in a.dropFirst() { out.append(try translate(sub, field: field)) }
            guard out.count >= 2 else { throw BlazarError.malformed(field, "\(op) needs operands") }
            return .array(out)
        case "not":
            guard a.count == 2 else { throw BlazarError.malformed(field, "not takes one expression") }
            return .array(["not", try translate(a[1], field: field)])
        default:
            guard a.count == 3, let key = a[1].stringValue, key.hasPrefix("$") else {
                throw BlazarError.malformed(field, "expected [\"\(op)\", \"$key\", value]")
            }
            let berthOp = op == "=" ? "==" : op
            guard ["==", "!=", "<", "<=", ">", ">=", "in"].contains(berthOp) else {
                throw BlazarError.malformed(field, "unknown operator \(op)")
            }
            return .array([.string(berthOp), .string(berthKey(key)), a[2]])
        }
    }

    static func berthKey(_ key: String) -> String {
        switch key {
        case "$local_gb": return "$disk_gb"
        case "$hypervisor_hostname": return "$name"
        default: return key
        }
    }

    /// Berth's stored filter as the string Blazar's clients show (empty for none).
    static func string(_ properties: JSON?) -> String {
        guard let p = properties, !p.isNull else { return "" }
        if case .object(let o) = p {
            if o.isEmpty { return "" }
            // Equalities: Blazar's form is one `==` per key, joined with `and`.
            let parts: [JSON] = o.keys.sorted().map { .array(["==", .string("$" + $0), o[$0]!]) }
            return (parts.count == 1 ? parts[0] : .array(["and"] + parts)).serialized()
        }
        return p.serialized()
    }
}
