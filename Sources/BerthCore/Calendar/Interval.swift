/// A half-open interval `[start, end)` in seconds since the Unix epoch.
///
/// Half-open so that back-to-back reservations (`[0, 10)` then `[10, 20)`) never conflict and
/// lengths are a plain subtraction.
public struct Interval: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var start: Int64
    public var end: Int64

    /// An empty or inverted interval would silently never overlap anything, so it is a programming error.
    public init(start: Int64, end: Int64) {
        precondition(start < end, "Interval requires start < end (got [\(start), \(end)))")
        self.start = start
        self.end = end
    }

    public var length: Int64 { end - start }

    /// Touching intervals do not overlap: the end instant belongs to the next interval only.
    public func overlaps(_ other: Interval) -> Bool {
        start < other.end && other.start < end
    }

    public func contains(_ t: Int64) -> Bool {
        start <= t && t < end
    }

    /// Ordered by `(start, end)`, the order in which the tree reports entries.
    public static func < (a: Interval, b: Interval) -> Bool {
        a.start != b.start ? a.start < b.start : a.end < b.end
    }

    public var description: String { "[\(start), \(end))" }
}
