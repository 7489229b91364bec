import BerthCore

// RFC 3339 in whole seconds, as the contract uses it. Only needed to turn `--duration` into `end`;
// the parsing itself is BerthCore's `Timestamp`, the same code the daemon uses.
enum RFC3339 {
    /// Seconds since the epoch, or nil when `text` is not RFC 3339 (`2030-01-01T10:00:00Z`, `...+02:00`).
    static func parse(_ text: String) -> Int64? { Timestamp(rfc3339: text)?.seconds }

    /// `2030-01-01T10:00:00Z`.
    static func format(_ seconds: Int64) -> String { Timestamp(seconds: seconds).rfc3339 }
}
