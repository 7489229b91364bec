import BerthTestSupport
import PropertyBased
import Testing

@testable import BerthCore

/// `IntervalTree(sorted:)` against the same entries inserted one by one: a bulk-built tree must be
/// indistinguishable from it, at once and through any later inserts and removes.
@Suite struct IntervalTreeBulkTests {
    typealias Entry = IntervalTreeTests.Entry

    /// Random entries in random order (small spans: many equal intervals, many duplicate pairs).
    static func randomEntries(_ n: Int, span: Int64, maxLength: Int64, payloads: Int, rng: inout SplitMix64) -> [(
        Interval, Int
    )] {
        (0..<n).map { _ in
            let s = Int64.random(in: 0..<span, using: &rng)
            return (
                Interval(start: s, end: s + Int64.random(in: 1...maxLength, using: &rng)),
                Int.random(in: 0..<payloads, using: &rng)
            )
        }
    }

    /// Insertion order is the tie-break, so the bulk input is sorted by (interval, position).
    static func stablySorted(_ items: [(Interval, Int)]) -> [(Interval, Int)] {
        items.enumerated().sorted { a, b in a.element.0 != b.element.0 ? a.element.0 < b.element.0 : a.offset < b.offset
        }
        .map(\.element)
    }

    /// Runs the same random operations on both trees, comparing every answer and validating both
    /// after each change. Returns the first difference.
    static func lockstep(
        _ a: inout IntervalTree<Int>, _ b: inout IntervalTree<Int>, span: Int64, maxLength: Int64, payloads: Int,
        operations: Int, rng: inout SplitMix64
    ) -> String? {
        func randomInterval() -> Interval {
            let s = Int64.random(in: 0..<span, using: &rng)
            return Interval(start: s, end: s + Int64.random(in: 1...maxLength, using: &rng))
        }
        for step in 0..<operations {
            let roll = Int.random(in: 0..<100, using: &rng)
            switch roll {
            case 0..<30:
                let i = randomInterval(), p = Int.random(in: 0..<payloads, using: &rng)
                a.insert(i, p)
                b.insert(i, p)
            case 30..<55:
                // An existing entry (of the incremental tree), or a random, often absent, one.
                let existing = a.entries
                let (i, p) =
                    !existing.isEmpty && roll < 48
                    ? existing[Int.random(in: 0..<existing.count, using: &rng)]
                    : (randomInterval(), Int.random(in: 0..<payloads, using: &rng))
                let ra = a.remove(i, p), rb = b.remove(i, p)
                if ra != rb { return "step \(step): remove(\(i), \(p)) = \(ra) incremental, \(rb) bulk" }
            case 55..<70:
                let q = randomInterval()
                let ea = IntervalTreeTests.entries(a.overlapping(q)), eb = IntervalTreeTests.entries(b.overlapping(q))
                if ea != eb { return "step \(step): overlapping(\(q)) = \(ea) incremental, \(eb) bulk" }
                if a.hasOverlap(q) != b.hasOverlap(q) { return "step \(step): hasOverlap(\(q)) differs" }
            case 70..<80:
                let length = Int64.random(in: 1...(2 * maxLength), using: &rng)
                let notBefore = Int64.random(in: -maxLength...(span + maxLength), using: &rng)
                let ga = a.firstFreeGap(length: length, notBefore: notBefore, notAfterEnd: Int64.max)
                let gb = b.firstFreeGap(length: length, notBefore: notBefore, notAfterEnd: Int64.max)
                if ga != gb {
                    return
                        "step \(step): firstFreeGap(\(length), \(notBefore)) = \(String(describing: ga)) incremental, \(String(describing: gb)) bulk"
                }
            case 80..<90:
                let t = Int64.random(in: -2...(span + maxLength + 2), using: &rng)
                if a.maxEnd(ofEntriesStartingBefore: t) != b.maxEnd(ofEntriesStartingBefore: t) {
                    return "step \(step): maxEnd(before: \(t)) differs"
                }
            default:
                let t = Int64.random(in: -2...(span + 2), using: &rng)
                if a.minStart(atOrAfter: t) != b.minStart(atOrAfter: t) {
                    return "step \(step): minStart(atOrAfter: \(t)) differs"
                }
            }
            if roll < 55 {
                if let problem = b.validate() { return "step \(step): bulk tree: \(problem)" }
                if a.count != b.count { return "step \(step): count \(a.count) incremental, \(b.count) bulk" }
                if IntervalTreeTests.entries(a.entries) != IntervalTreeTests.entries(b.entries) {
                    return "step \(step): entries differ"
                }
            }
        }
        return nil
    }

    static func check(seed: UInt64, count: Int, span: Int64, maxLength: Int64, payloads: Int, operations: Int)
        -> String?
    {
        var rng = SplitMix64(seed: seed)
        let items = randomEntries(count, span: span, maxLength: maxLength, payloads: payloads, rng: &rng)
        var incremental = IntervalTree<Int>()
        for (i, p) in items { incremental.insert(i, p) }
        let sorted = stablySorted(items)
        // The array initializer (moving entries out of an array still referenced here, so it must
        // copy it first) and the generic one (any sequence).
        var bulk = IntervalTree<Int>(sorted: sorted)
        let viaSequence = IntervalTree<Int>(sorted: AnySequence(sorted))
        if sorted.count != items.count { return "the array given to IntervalTree(sorted:) changed" }
        for (name, tree) in [("array", bulk), ("sequence", viaSequence)] {
            if let problem = tree.validate() { return "fresh bulk tree (\(name)): \(problem)" }
            if tree.count != items.count { return "fresh bulk tree (\(name)) holds \(tree.count) of \(items.count)" }
            if IntervalTreeTests.entries(tree.entries) != IntervalTreeTests.entries(incremental.entries) {
                return "fresh bulk tree's entries (\(name)) differ from the incremental tree's"
            }
        }
        return lockstep(
            &incremental, &bulk, span: span, maxLength: maxLength, payloads: payloads, operations: operations, rng: &rng
        )
    }

    @Test(arguments: [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 100, 1000, 4097])
    func everySizeIsBalancedAndOrdered(_ n: Int) {
        // Distinct, sorted intervals: the tree must be perfectly valid at every size, including the
        // awkward ones just below and above powers of two.
        let items = (0..<n).map { k in (Interval(start: Int64(k), end: Int64(k) + 1 + Int64(k % 7)), k) }
        let tree = IntervalTree<Int>(sorted: items)
        #expect(tree.validate() == nil)
        #expect(tree.count == n)
        #expect(tree.isEmpty == (n == 0))
        #expect(IntervalTreeTests.entries(tree.entries) == items.map { Entry(interval: $0.0, payload: $0.1) })
        // Height is the minimum possible: ceil(log2(n + 1)).
        let height = tree.root < 0 ? 0 : Int(tree.nodes[Int(tree.root)].height)
        var expected = 0
        while (1 << expected) - 1 < n { expected += 1 }
        #expect(height == expected)
    }

    @Test(arguments: [
        (UInt64(0xB01C_0001), 0, Int64(50), Int64(5), 3),
        (0xB01C_0002, 1, 50, 5, 3),
        (0xB01C_0003, 40, 10, 3, 2),  // mostly equal intervals and duplicate pairs
        (0xB01C_0004, 300, 400, 40, 5),
        (0xB01C_0005, 1000, 5000, 30, 1000),
        (0xB01C_0006, 257, 1000, 400, 4),
    ])
    func equalsIncrementalThroughLaterChanges(
        _ seed: UInt64, _ count: Int, _ span: Int64, _ maxLength: Int64, _ payloads: Int
    ) {
        if let problem = Self.check(
            seed: seed, count: count, span: span, maxLength: maxLength, payloads: payloads, operations: 2000)
        {
            Issue.record("seed 0x\(String(seed, radix: 16)): \(problem)")
        }
    }

    /// Fresh seeds on every run (PropertyBased prints how to replay).
    @Test func equalsIncrementalRandomSeeds() async {
        await propertyCheck(count: 40, input: Gen.uint64(), Gen.int(in: 0...400), Gen.int64(in: 5...600)) {
            seed, count, span in
            if let problem = Self.check(
                seed: seed, count: count, span: span, maxLength: max(2, span / 6), payloads: 4, operations: 400)
            {
                Issue.record("seed 0x\(String(seed, radix: 16)) count \(count) span \(span): \(problem)")
            }
        }
    }

    /// Removing everything from a bulk-built tree, in any order, keeps every invariant (compaction
    /// moves nodes that were laid out in key order, not insertion order).
    @Test func removeAllInAnyOrder() {
        var rng = SplitMix64(seed: 0xB01C_00FF)
        for round in 0..<20 {
            let items = Self.stablySorted(
                Self.randomEntries(Int.random(in: 1...200, using: &rng), span: 60, maxLength: 9, payloads: 3, rng: &rng)
            )
            var tree = IntervalTree<Int>(sorted: items)
            for (i, p) in items.shuffled(using: &rng) {
                guard tree.remove(i, p) else {
                    Issue.record("round \(round): remove(\(i), \(p)) failed")
                    return
                }
                if let problem = tree.validate() {
                    Issue.record("round \(round): \(problem)")
                    return
                }
            }
            #expect(tree.isEmpty)
        }
    }

    @Test func sequenceNumbersContinueAfterTheBulkEntries() {
        // Inserting an interval equal to bulk-built ones must place it after them (it is the latest).
        let iv = Interval(start: 10, end: 20)
        var tree = IntervalTree<Int>(sorted: [(iv, 1), (iv, 2), (iv, 3)])
        tree.insert(iv, 4)
        tree.insert(Interval(start: 0, end: 5), 0)
        #expect(tree.validate() == nil)
        #expect(tree.entries.map(\.payload) == [0, 1, 2, 3, 4])
        #expect(IntervalTreeTests.removed(&tree, iv, 2))
        tree.insert(iv, 2)
        #expect(tree.entries.map(\.payload) == [0, 1, 3, 4, 2])
    }
}
