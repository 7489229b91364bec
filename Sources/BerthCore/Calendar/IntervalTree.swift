/// An AVL-balanced interval tree (a multiset of `(Interval, Payload)` entries), augmented with the
/// largest `end` in every subtree so that overlap queries can skip subtrees that end too early.
///
/// Nodes live in one `ContiguousArray` and refer to each other by `Int32` index rather than by
/// class references: copying the tree is O(1), mutation copies the array only when it is shared
/// (copy-on-write), so the tree has value semantics and is `Sendable` without locks. Instead of a
/// free list, the array is kept dense (a removed node's slot is refilled by the last node, one extra
/// O(log n) descent): a free slot would keep its stale payload alive, and `nodes.count == count`.
///
/// Entries are ordered by `(start, end, insertion sequence)`; the sequence number makes every key
/// unique, which keeps duplicate handling and node lookup simple and makes equal intervals come
/// out in insertion order.
public struct IntervalTree<Payload: Hashable & Sendable>: Sendable {
    struct Node: Sendable {
        var start: Int64
        var end: Int64
        /// Largest `end` in the subtree rooted here (this node included).
        var maxEnd: Int64
        /// Insertion sequence number: the tie-breaker that makes keys unique.
        var seq: UInt64
        var left: Int32
        var right: Int32
        var height: Int32
        var payload: Payload
    }

    /// Index meaning "no node".
    static var none: Int32 { -1 }

    // Internal (not private) only so white-box tests can reach the root.
    private(set) var nodes: ContiguousArray<Node> = []
    private(set) var root: Int32 = -1
    // Readable (like `less` and `none`) by the validation extension in its own file.
    private(set) var nextSeq: UInt64 = 0

    public init() {}

    public var count: Int { nodes.count }
    public var isEmpty: Bool { nodes.isEmpty }

    // MARK: - Node helpers

    @inline(__always) private func height(_ i: Int32) -> Int32 { i < 0 ? 0 : nodes[Int(i)].height }
    @inline(__always) private func maxEnd(_ i: Int32) -> Int64 { i < 0 ? Int64.min : nodes[Int(i)].maxEnd }

    /// Recomputes height and the max-end augmentation from the children; called bottom-up after every
    /// structural change so the augmentation can never go stale.
    @inline(__always) private mutating func update(_ i: Int32) {
        let n = nodes[Int(i)]
        let h = max(height(n.left), height(n.right)) + 1
        let m = max(n.end, max(maxEnd(n.left), maxEnd(n.right)))
        nodes[Int(i)].height = h
        nodes[Int(i)].maxEnd = m
    }

    private mutating func rotateRight(_ y: Int32) -> Int32 {
        let x = nodes[Int(y)].left
        nodes[Int(y)].left = nodes[Int(x)].right
        nodes[Int(x)].right = y
        update(y)
        update(x)
        return x
    }

    private mutating func rotateLeft(_ x: Int32) -> Int32 {
        let y = nodes[Int(x)].right
        nodes[Int(x)].right = nodes[Int(y)].left
        nodes[Int(y)].left = x
        update(x)
        update(y)
        return y
    }

    /// Restores the AVL invariant at `i` (children already balanced) and returns the new subtree root.
    private mutating func rebalance(_ i: Int32) -> Int32 {
        update(i)
        let n = nodes[Int(i)]
        let balance = height(n.left) - height(n.right)
        if balance > 1 {
            let l = nodes[Int(n.left)]
            if height(l.left) < height(l.right) {
                nodes[Int(i)].left = rotateLeft(n.left)
            }
            return rotateRight(i)
        }
        if balance < -1 {
            let r = nodes[Int(n.right)]
            if height(r.right) < height(r.left) {
                nodes[Int(i)].right = rotateRight(n.right)
            }
            return rotateLeft(i)
        }
        return i
    }

    /// Strict order on node keys `(start, end, seq)`.
    @inline(__always)
    static func less(_ s1: Int64, _ e1: Int64, _ q1: UInt64, _ s2: Int64, _ e2: Int64, _ q2: UInt64) -> Bool {
        if s1 != s2 { return s1 < s2 }
        if e1 != e2 { return e1 < e2 }
        return q1 < q2
    }

    // MARK: - Insert

    /// Duplicates of `(interval, payload)` are allowed (multiset): two bookings may legitimately carry
    /// the same payload and window, and the caller decides whether that is an error.
    public mutating func insert(_ interval: Interval, _ payload: Payload) {
        precondition(interval.start < interval.end, "Interval requires start < end")
        precondition(nodes.count < Int(Int32.max), "IntervalTree is full")
        let seq = nextSeq
        nextSeq &+= 1
        let index = Int32(nodes.count)
        nodes.append(
            Node(
                start: interval.start, end: interval.end, maxEnd: interval.end, seq: seq,
                left: Self.none, right: Self.none, height: 1, payload: payload))
        root = insert(index, into: root)
    }

    private mutating func insert(_ new: Int32, into i: Int32) -> Int32 {
        if i < 0 { return new }
        let n = nodes[Int(new)]
        let at = nodes[Int(i)]
        if Self.less(n.start, n.end, n.seq, at.start, at.end, at.seq) {
            nodes[Int(i)].left = insert(new, into: at.left)
        } else {
            nodes[Int(i)].right = insert(new, into: at.right)
        }
        return rebalance(i)
    }

    // MARK: - Remove

    /// Removes one entry equal to `(interval, payload)`; `false` if there is none.
    ///
    /// Entries with the same interval form a contiguous run in key order, so finding the matching
    /// payload costs O(log n + entries with that interval); the removal itself is O(log n).
    @discardableResult
    public mutating func remove(_ interval: Interval, _ payload: Payload) -> Bool {
        guard let seq = findSeq(interval, payload, in: root) else { return false }
        var removed: Int32 = Self.none
        root = remove(start: interval.start, end: interval.end, seq: seq, from: root, removed: &removed)
        precondition(removed >= 0, "IntervalTree corrupted: located node vanished")
        compact(removed)
        return true
    }

    /// In-order search restricted to nodes whose interval equals the target.
    private func findSeq(_ interval: Interval, _ payload: Payload, in i: Int32) -> UInt64? {
        if i < 0 { return nil }
        let n = nodes[Int(i)]
        if n.start < interval.start || (n.start == interval.start && n.end < interval.end) {
            return findSeq(interval, payload, in: n.right)
        }
        if n.start > interval.start || n.end > interval.end {
            return findSeq(interval, payload, in: n.left)
        }
        if let s = findSeq(interval, payload, in: n.left) { return s }
        if n.payload == payload { return n.seq }
        return findSeq(interval, payload, in: n.right)
    }

    private mutating func remove(start: Int64, end: Int64, seq: UInt64, from i: Int32, removed: inout Int32) -> Int32 {
        if i < 0 { return i }
        let n = nodes[Int(i)]
        if Self.less(start, end, seq, n.start, n.end, n.seq) {
            nodes[Int(i)].left = remove(start: start, end: end, seq: seq, from: n.left, removed: &removed)
            return rebalance(i)
        }
        if Self.less(n.start, n.end, n.seq, start, end, seq) {
            nodes[Int(i)].right = remove(start: start, end: end, seq: seq, from: n.right, removed: &removed)
            return rebalance(i)
        }
        removed = i
        if n.left < 0 { return n.right }
        if n.right < 0 { return n.left }
        // Two children: the in-order successor takes this node's place.
        var successor: Int32 = Self.none
        let newRight = detachMin(n.right, min: &successor)
        nodes[Int(successor)].left = n.left
        nodes[Int(successor)].right = newRight
        return rebalance(successor)
    }

    private mutating func detachMin(_ i: Int32, min: inout Int32) -> Int32 {
        let n = nodes[Int(i)]
        if n.left < 0 {
            min = i
            return n.right
        }
        nodes[Int(i)].left = detachMin(n.left, min: &min)
        return rebalance(i)
    }

    /// Fills the hole left by a removed node with the last node so storage stays dense.
    private mutating func compact(_ hole: Int32) {
        let last = Int32(nodes.count - 1)
        if hole != last {
            let moved = nodes[Int(last)]
            nodes[Int(hole)] = moved
            if root == last {
                root = hole
            } else {
                // Keys are unique, so a plain descent finds the moved node's parent.
                var p = root
                while true {
                    let pn = nodes[Int(p)]
                    if Self.less(moved.start, moved.end, moved.seq, pn.start, pn.end, pn.seq) {
                        if pn.left == last {
                            nodes[Int(p)].left = hole
                            break
                        }
                        p = pn.left
                    } else {
                        if pn.right == last {
                            nodes[Int(p)].right = hole
                            break
                        }
                        p = pn.right
                    }
                    precondition(p >= 0, "IntervalTree corrupted: moved node not found")
                }
            }
        }
        nodes.removeLast()
    }

    // MARK: - Queries

    /// All entries overlapping `query`, in `(start, end)` order (equal intervals in insertion order).
    public func overlapping(_ query: Interval) -> [(interval: Interval, payload: Payload)] {
        var out: [(interval: Interval, payload: Payload)] = []
        forEachOverlapping(query) { iv, p in
            out.append((iv, p))
            return true
        }
        return out
    }

    /// Visits overlapping entries in order without building an array, so callers that only need the
    /// first conflict (or a count) pay nothing for the rest. Return `false` from `body` to stop.
    public func forEachOverlapping(_ query: Interval, _ body: (Interval, Payload) -> Bool) {
        _ = visitOverlapping(root, query.start, query.end, body)
    }

    /// Prunes on both sides: a subtree whose max end is `<= qs` cannot overlap, and nothing right of a
    /// node starting at or after `qe` can either (starts are sorted).
    private func visitOverlapping(_ i: Int32, _ qs: Int64, _ qe: Int64, _ body: (Interval, Payload) -> Bool) -> Bool {
        if i < 0 { return true }
        // Read the fields in place: copying the node would retain and release its payload.
        let (start, end, maxEnd, left, right) = nodes.withUnsafeBufferPointer { b in
            (b[Int(i)].start, b[Int(i)].end, b[Int(i)].maxEnd, b[Int(i)].left, b[Int(i)].right)
        }
        if maxEnd <= qs { return true }
        if !visitOverlapping(left, qs, qe, body) { return false }
        if start >= qe { return true }
        if end > qs {
            if !body(Interval(start: start, end: end), nodes[Int(i)].payload) { return false }
        }
        return visitOverlapping(right, qs, qe, body)
    }

    /// Single root-to-leaf descent (CLRS interval search): if the left subtree reaches past
    /// `query.start` but holds no overlap, its far-reaching entry starts at or after `query.end`,
    /// and so does everything to the right, so the right side never needs a look.
    public func hasOverlap(_ query: Interval) -> Bool {
        nodes.withUnsafeBufferPointer { b in
            var i = root
            while i >= 0 {
                let n = Int(i)
                if b[n].start < query.end && query.start < b[n].end { return true }
                let l = b[n].left
                i = l >= 0 && b[Int(l)].maxEnd > query.start ? l : b[n].right
            }
            return false
        }
    }

    /// Largest `end` among entries with `start < t`: tells how far the busy time reaching into `t`
    /// extends, without enumerating those entries.
    public func maxEnd(ofEntriesStartingBefore t: Int64) -> Int64? {
        nodes.withUnsafeBufferPointer { b in
            var best: Int64? = nil
            var i = root
            while i >= 0 {
                let n = Int(i)
                if b[n].start < t {
                    // This node and its whole left subtree start before t.
                    var m = b[n].end
                    let l = b[n].left
                    if l >= 0 { m = max(m, b[Int(l)].maxEnd) }
                    best = max(best ?? m, m)
                    i = b[n].right
                } else {
                    i = b[n].left
                }
            }
            return best
        }
    }

    /// Smallest `start` that is `>= t`: where the next busy period begins.
    public func minStart(atOrAfter t: Int64) -> Int64? {
        nodes.withUnsafeBufferPointer { b in
            var best: Int64? = nil
            var i = root
            while i >= 0 {
                let n = Int(i)
                if b[n].start >= t {
                    best = b[n].start
                    i = b[n].left
                } else {
                    i = b[n].right
                }
            }
            return best
        }
    }

    /// The earliest `s >= notBefore` with `[s, s + length)` free and `s + length <= notAfterEnd`.
    ///
    /// Walks the timeline gap by gap instead of entry by entry: from a candidate `s`, one
    /// O(log n) query finds how far the entries starting at or before `s` reach (`s` jumps there if
    /// it is covered), another finds where the next entry begins; if the gap in between is long
    /// enough we are done, otherwise `s` jumps to that next start. Each jump costs O(log n) and
    /// allocates nothing; a busy period is usually crossed in one or two jumps (at worst one per
    /// entry in it, for a staircase of partly overlapping entries), and entries outside
    /// `[notBefore, answer]` are never looked at.
    public func firstFreeGap(length: Int64, notBefore: Int64, notAfterEnd: Int64) -> Int64? {
        precondition(length > 0, "firstFreeGap requires length > 0")
        var s = notBefore
        while true {
            guard Self.fits(s, length, notAfterEnd) else { return nil }
            // s <= notAfterEnd - length < Int64.max, so s + 1 cannot overflow.
            if let reach = maxEnd(ofEntriesStartingBefore: s + 1), reach > s {
                s = reach
                continue
            }
            // s is free; the gap runs until the next entry starts.
            guard let next = minStart(atOrAfter: s) else { return s }
            if Self.atLeast(next, s, length) { return s }
            s = next
        }
    }

    /// `s + length <= limit` without overflow.
    @inline(__always)
    private static func fits(_ s: Int64, _ length: Int64, _ limit: Int64) -> Bool {
        s <= limit && atLeast(limit, s, length)
    }

    /// `hi - lo >= length` for `hi >= lo`, without overflow (an overflowing difference exceeds any length).
    @inline(__always)
    private static func atLeast(_ hi: Int64, _ lo: Int64, _ length: Int64) -> Bool {
        let (d, overflow) = hi.subtractingReportingOverflow(lo)
        return overflow || d >= length
    }

    /// All entries in `(start, end)` order (equal intervals in insertion order).
    public var entries: [(interval: Interval, payload: Payload)] {
        var out: [(interval: Interval, payload: Payload)] = []
        out.reserveCapacity(nodes.count)
        func walk(_ i: Int32) {
            if i < 0 { return }
            let n = nodes[Int(i)]
            walk(n.left)
            out.append((Interval(start: n.start, end: n.end), n.payload))
            walk(n.right)
        }
        walk(root)
        return out
    }
}

// MARK: - Bulk construction

extension IntervalTree {
    /// Builds the tree in O(n) from entries already in `(start, end)` order, as a restart does with
    /// a whole calendar at once instead of n inserts with their rebalancing.
    ///
    /// Entries with equal intervals keep their order in `sorted`, which becomes their insertion order:
    /// the result is indistinguishable from inserting the entries one by one in that order (same
    /// entries, same query answers, same order of equal intervals), and later inserts and removes work
    /// on it as on any tree. Each subtree's root is the middle entry of its range, so the two sides
    /// of every node differ by at most one entry and hence in height by at most one (AVL).
    ///
    /// The order is checked (a precondition, O(n)): an unsorted input would make every query wrong.
    public init<S: Sequence>(sorted entries: S) where S.Element == (Interval, Payload) {
        self.init()
        var nodes = ContiguousArray<Node>()
        nodes.reserveCapacity(entries.underestimatedCount)
        var previous: Interval? = nil
        for (interval, payload) in entries {
            if let p = previous { Self.checkOrder(p, interval) }
            previous = interval
            // Node k holds the k-th entry with sequence number k: keys stay unique and ordered, and
            // equal intervals come out in input order.
            nodes.append(Self.leaf(interval, payload, seq: nodes.count))
        }
        self.nodes = nodes
        root = Self.link(&self.nodes)
        nextSeq = UInt64(nodes.count)
    }

    /// The same for an array handed over: its entries are moved into the tree instead of copied, so
    /// payloads are not reference-counted again (a restart builds a million of them). Pass an array
    /// nothing else refers to (moved out of its dictionary, say), or it is copied first.
    public init(sorted entries: consuming [(Interval, Payload)]) {
        self.init()
        var list = entries
        let count = list.count
        // popLast moves each entry out of the (uniquely referenced) array, last first; the order is
        // checked on the way (reading entries in place would copy their payloads).
        nodes = ContiguousArray(unsafeUninitializedCapacity: count) { buffer, initialized in
            var k = count
            var next: Interval? = nil
            while let entry = list.popLast() {
                k -= 1
                if let next { Self.checkOrder(entry.0, next) }
                next = entry.0
                (buffer.baseAddress! + k).initialize(to: Self.leaf(entry.0, entry.1, seq: k))
            }
            initialized = count
        }
        root = Self.link(&nodes)
        nextSeq = UInt64(count)
    }

    @inline(__always)
    private static func checkOrder(_ previous: Interval, _ next: Interval) {
        precondition(
            !(next < previous), "IntervalTree(sorted:) needs entries in (start, end) order: \(next) after \(previous)")
    }

    @inline(__always)
    private static func leaf(_ interval: Interval, _ payload: Payload, seq: Int) -> Node {
        Node(
            start: interval.start, end: interval.end, maxEnd: interval.end, seq: UInt64(seq), left: -1, right: -1,
            height: 1, payload: payload)
    }

    /// Links nodes laid out in key order into a balanced tree and returns its root (-1 when empty):
    /// each range's middle node is its subtree's root, with heights and max ends set bottom-up.
    private static func link(_ nodes: inout ContiguousArray<Node>) -> Int32 {
        precondition(nodes.count < Int(Int32.max), "IntervalTree is full")
        let count = nodes.count
        return nodes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            func link(_ lo: Int, _ hi: Int) -> Int32 {
                if lo >= hi { return -1 }
                let mid = lo + (hi - lo) / 2
                let l = link(lo, mid)
                let r = link(mid + 1, hi)
                var height: Int32 = 1
                var maxEnd = buffer[mid].end
                if l >= 0 {
                    height = buffer[Int(l)].height + 1
                    maxEnd = Swift.max(maxEnd, buffer[Int(l)].maxEnd)
                }
                if r >= 0 {
                    height = Swift.max(height, buffer[Int(r)].height + 1)
                    maxEnd = Swift.max(maxEnd, buffer[Int(r)].maxEnd)
                }
                buffer[mid].left = l
                buffer[mid].right = r
                buffer[mid].height = height
                buffer[mid].maxEnd = maxEnd
                return Int32(mid)
            }
            return link(0, count)
        }
    }
}
