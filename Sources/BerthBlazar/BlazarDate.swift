import BerthCore
import BerthJSON

/// Blazar's two date forms: requests say `2030-01-01 10:00` (UTC, minutes; or `now`), responses
/// say `2030-01-01T10:00:00.000000` (naive UTC with microseconds, which python-blazarclient
/// parses with `%Y-%m-%dT%H:%M:%S.%f`) and `2030-01-01 10:00:00` for created/updated times.
enum BlazarDate {
    /// The request format, as Blazar's error messages name it.
    static let requestFormat = "%Y-%m-%d %H:%M"

    /// `YYYY-MM-DD HH:MM`; nil for anything else (Blazar refuses seconds too).
    static func parse(_ text: String) -> Timestamp? {
        let u = Array(text.utf8)
        guard u.count == 16, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"), u[10] == UInt8(ascii: " "),
            u[13] == UInt8(ascii: ":")
        else { return nil }
        let iso =
            String(decoding: u[0..<10], as: UTF8.self) + "T" + String(decoding: u[11..<16], as: UTF8.self)
            + ":00Z"
        return Timestamp(rfc3339: iso)
    }

    /// A request date, or Blazar's `InvalidDate` error naming it.
    static func parseRequest(_ value: JSON?, field: String) throws(BlazarError) -> Timestamp? {
        guard let value, !value.isNull else { return nil }
        guard let s = value.stringValue, let t = parse(s) else {
            let shown = value.stringValue ?? value.serialized()
            throw BlazarError(400, "\(shown) is an invalid date. Required format: \(requestFormat)")
        }
        return t
    }

    /// `2030-01-01T10:00:00.000000`, from Berth's RFC 3339 `2030-01-01T10:00:00Z`.
    static func response(_ rfc3339: String?) -> JSON {
        guard let s = rfc3339, s.hasSuffix("Z"), s.count == 20 else { return .null }
        return .string(String(s.dropLast()) + ".000000")
    }

    /// `2030-01-01 10:00:00`, as Blazar shows `created_at` and `updated_at`.
    static func record(_ rfc3339: String?) -> JSON {
        guard let s = rfc3339, s.hasSuffix("Z"), s.count == 20 else { return .null }
        return .string(String(s.dropLast()).replacingFirst("T", with: " "))
    }
}

extension String {
    fileprivate func replacingFirst(_ a: Character, with b: Character) -> String {
        guard let i = firstIndex(of: a) else { return self }
        var s = self
        s.replaceSubrange(i...i, with: String(b))
        return s
    }
}
