import BerthContract
import BerthJSON

/// The `created_at:id` cursors of `lease.list` and `preemptible.list`: a position in a list kept
/// sorted by (creation time, id), stable while items are added.
public enum CreationCursor {
    public static func parse(_ cursor: String?, method: RPCMethod, into r: inout ParamReader) -> (Timestamp, String)? {
        guard let cursor else { return nil }
        let parts = cursor.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let secs = Int64(parts[0]) else {
            r.fail("cursor", "is not a cursor returned by \(method.rawValue)")
            return nil
        }
        return (Timestamp(seconds: secs), String(parts[1]))
    }

    public static func make(_ createdAt: Timestamp, _ id: String) -> JSON { .string("\(createdAt.seconds):\(id)") }

    /// The first position after `key` (binary search).
    public static func index(after key: (Timestamp, String), in order: [(Timestamp, String)]) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if order[mid] <= key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
