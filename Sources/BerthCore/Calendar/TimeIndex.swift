/// A sorted multiset of `(time, host number)` pairs: every allocation's start (or end) across all
/// hosts, so the planner can walk outward from a window in time order and meet the hosts whose
/// free gap fits it most tightly first, instead of asking every host (see `LeaseCalendar.tightestFree`).
///
/// Stored as sorted chunks of at most `chunkCapacity` pairs (a two-level B-tree): insert and remove
/// cost a binary search plus a memmove inside one chunk, and walking in either direction is a
/// pointer bump. Value type with copy-on-write chunks, like the calendar that owns it.
public struct TimeIndex: Sendable {
    public struct Item: Sendable, Hashable, Comparable {
        public var time: Int64
        public var host: Int32
        public init(time: Int64, host: Int32) {
            self.time = time
            self.host = host
        }
        @inline(__always)
        public static func < (a: Item, b: Item) -> Bool { a.time != b.time ? a.time < b.time : a.host < b.host }
    }

    static let chunkCapacity = 512
    private(set) var chunks: [[Item]] = []
    /// First item of each chunk, for the chunk search.
    private var heads: [Item] = []
    public private(set) var count = 0

    public init() {}

    /// Builds from items in any order (restart).
    public init(_ items: [Item]) {
        let sorted = items.sorted()
        count = sorted.count
        var i = 0
        let half = TimeIndex.chunkCapacity / 2
        while i < sorted.count {
            let j = Swift.min(sorted.count, i + half)
            chunks.append(Array(sorted[i..<j]))
            heads.append(sorted[i])
            i = j
        }
    }

    /// Index of the chunk an item belongs in: the last whose head is <= item (0 if none).
    @inline(__always)
    private func chunkIndex(for item: Item) -> Int {
        var lo = 0
        var hi = heads.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if item < heads[mid] { hi = mid } else { lo = mid + 1 }
        }
        return Swift.max(0, lo - 1)
    }

    /// First position in a chunk whose item is not less than `item`.
    @inline(__always)
    private static func lowerBound(_ chunk: [Item], _ item: Item) -> Int {
        var lo = 0
        var hi = chunk.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunk[mid] < item { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    public mutating func insert(_ item: Item) {
        count += 1
        if chunks.isEmpty {
            chunks = [[item]]
            heads = [item]
            return
        }
        let c = chunkIndex(for: item)
        let at = TimeIndex.lowerBound(chunks[c], item)
        chunks[c].insert(item, at: at)
        heads[c] = chunks[c][0]
        if chunks[c].count > TimeIndex.chunkCapacity {
            let upper = Array(chunks[c][(TimeIndex.chunkCapacity / 2)...])
            chunks[c].removeLast(upper.count)
            chunks.insert(upper, at: c + 1)
            heads.insert(upper[0], at: c + 1)
        }
    }

    /// Removes one copy; false if there is none.
    @discardableResult
    public mutating func remove(_ item: Item) -> Bool {
        guard !chunks.isEmpty else { return false }
        let c = chunkIndex(for: item)
        let at = TimeIndex.lowerBound(chunks[c], item)
        guard at < chunks[c].count, chunks[c][at] == item else { return false }
        count -= 1
        chunks[c].remove(at: at)
        if chunks[c].isEmpty {
            chunks.remove(at: c)
            heads.remove(at: c)
        } else {
            heads[c] = chunks[c][0]
        }
        return true
    }

    /// A position between items; `before`/`after` read around it.
    public struct Cursor: Sendable {
        var chunk: Int
        var offset: Int
    }

    /// The position before the first item whose time is >= `t`.
    public func cursor(atTime t: Int64) -> Cursor {
        let probe = Item(time: t, host: Int32.min)
        guard !chunks.isEmpty else { return Cursor(chunk: 0, offset: 0) }
        let c = chunkIndex(for: probe)
        return Cursor(chunk: c, offset: TimeIndex.lowerBound(chunks[c], probe))
    }

    /// The item after the cursor, advancing it; nil at the end.
    @inline(__always)
    public func next(_ cur: inout Cursor) -> Item? {
        while cur.chunk < chunks.count {
            if cur.offset < chunks[cur.chunk].count {
                let item = chunks[cur.chunk][cur.offset]
                cur.offset += 1
                return item
            }
            cur.chunk += 1
            cur.offset = 0
        }
        return nil
    }

    /// The item before the cursor, moving it back; nil at the start.
    @inline(__always)
    public func previous(_ cur: inout Cursor) -> Item? {
        while true {
            if cur.offset > 0 {
                cur.offset -= 1
                return chunks[cur.chunk][cur.offset]
            }
            if cur.chunk == 0 || chunks.isEmpty { return nil }
            cur.chunk -= 1
            cur.offset = chunks[cur.chunk].count
        }
    }

    /// Every item in order (tests).
    public var items: [Item] { chunks.flatMap { $0 } }
}
