import BerthTestSupport
import PropertyBased
import Testing

@testable import BerthCore

/// Everything else lives in this namespace so that helper names (`Oracle`, `Entry`, `iv`, ...) cannot
/// clash with other test files in the same target.
enum IntervalTreeTests {
    // MARK: - Helpers

    /// Tuples are not Equatable; this makes whole result lists comparable with `==`.
    struct Entry: Equatable, CustomStringConvertible {
        var interval: Interval
        var payload: Int
        var description: String { "\(interval)=\(payload)" }
    }

    static func iv(_ s: Int64, _ e: Int64) -> Interval { Interval(start: s, end: e) }

    /// `#expect` cannot call a mutating method on its operand, so removals go through this.
    static func removed<P>(_ tree: inout IntervalTree<P>, _ interval: Interval, _ payload: P) -> Bool {
        tree.remove(interval, payload)
    }

    static func entries(_ list: [(interval: Interval, payload: Int)]) -> [Entry] {
        list.map { Entry(interval: $0.interval, payload: $0.payload) }
    }

    /// Brute-force reference: a flat list in insertion order, every query a linear scan.
    struct Oracle {
        var items: [(interval: Interval, payload: Int, seq: Int)] = []
        var nextSeq = 0

        mutating func insert(_ i: Interval, _ p: Int) {
            items.append((i, p, nextSeq))
            nextSeq += 1
        }

        mutating func remove(_ i: Interval, _ p: Int) -> Bool {
            guard let k = items.firstIndex(where: { $0.interval == i && $0.payload == p }) else { return false }
            items.remove(at: k)
            return true
        }

        /// (start, end) order, equal intervals in insertion order.
        func sorted(_ subset: [(interval: Interval, payload: Int, seq: Int)]) -> [Entry] {
            subset.sorted { a, b in a.interval != b.interval ? a.interval < b.interval : a.seq < b.seq }
                .map { Entry(interval: $0.interval, payload: $0.payload) }
        }

        var all: [Entry] { sorted(items) }

        func overlapping(_ q: Interval) -> [Entry] { sorted(items.filter { $0.interval.overlaps(q) }) }

        func maxEnd(before t: Int64) -> Int64? { items.filter { $0.interval.start < t }.map(\.interval.end).max() }

        func minStart(atOrAfter t: Int64) -> Int64? {
            items.filter { $0.interval.start >= t }.map(\.interval.start).min()
        }

        /// The answer is always `notBefore` or the end of some entry: if `s - 1` was not free but `s` is,
        /// an entry must end exactly at `s`. So trying those candidates in order is exhaustive.
        func firstFreeGap(length: Int64, notBefore: Int64, notAfterEnd: Int64) -> Int64? {
            let candidates = Set([notBefore] + items.map(\.interval.end).filter { $0 > notBefore }).sorted()
            for c in candidates {
                // Test coordinates are small, so `c + length` cannot overflow even when notAfterEnd is Int64.max.
                if c + length > notAfterEnd { return nil }
                let w = Interval(start: c, end: c + length)
                if !items.contains(where: { $0.interval.overlaps(w) }) { return c }
            }
            return nil
        }
    }

    struct ModelConfig: Sendable, CustomStringConvertible {
        var seed: UInt64
        var operations: Int
        /// Starts are drawn from `0..<span`; a small span forces many overlaps and duplicate intervals.
        var span: Int64
        var maxLength: Int64
        /// Few distinct payloads make duplicate (interval, payload) pairs likely.
        var payloads: Int
        /// Once the tree holds this many entries, inserts turn into removals: the run then churns at a
        /// steady size, which exercises deletion rebalancing hard and keeps the O(n) checks cheap.
        var capacity: Int = 300
        var description: String {
            "seed=0x\(String(seed, radix: 16)) ops=\(operations) span=\(span) maxLength=\(maxLength) payloads=\(payloads) capacity=\(capacity)"
        }
    }

    /// Runs random operations against the tree and the oracle in lockstep, stopping at the first
    /// divergence (one clear message with the seed and step beats thousands of cascading failures).
    static func runModel(_ config: ModelConfig, sourceLocation: SourceLocation = #_sourceLocation) {
        var rng = SplitMix64(seed: config.seed)
        var tree = IntervalTree<Int>()
        var oracle = Oracle()
        let span = config.span, maxLength = config.maxLength

        func randomInterval() -> Interval {
            let s = Int64.random(in: 0..<span, using: &rng)
            return Interval(start: s, end: s + Int64.random(in: 1...maxLength, using: &rng))
        }

        for step in 0..<config.operations {
            var failure: String? = nil
            func check(_ ok: Bool, _ what: @autoclosure () -> String) {
                if !ok && failure == nil { failure = what() }
            }

            var roll = Int.random(in: 0..<100, using: &rng)
            if roll < 35 && oracle.items.count >= config.capacity { roll = 35 }
            switch roll {
            case 0..<35:
                let i = randomInterval(), p = Int.random(in: 0..<config.payloads, using: &rng)
                tree.insert(i, p)
                oracle.insert(i, p)
            case 35..<50:
                // Remove an entry that exists.
                if let victim = oracle.items.randomElement(using: &rng) {
                    let ok = tree.remove(victim.interval, victim.payload)
                    _ = oracle.remove(victim.interval, victim.payload)
                    check(ok, "remove(\(victim.interval), \(victim.payload)) returned false for an existing entry")
                }
            case 50..<58:
                // Remove something random: often absent, sometimes present.
                let i = randomInterval(), p = Int.random(in: 0..<config.payloads, using: &rng)
                let got = tree.remove(i, p)
                let want = oracle.remove(i, p)
                check(got == want, "remove(\(i), \(p)) returned \(got), oracle \(want)")
            case 58..<62:
                // Existing interval with a payload that may not be stored with it.
                if let victim = oracle.items.randomElement(using: &rng) {
                    let p = config.payloads + Int.random(in: 0...1, using: &rng) - 1
                    let got = tree.remove(victim.interval, p)
                    let want = oracle.remove(victim.interval, p)
                    check(got == want, "remove(\(victim.interval), \(p)) returned \(got), oracle \(want)")
                }
            case 62..<72:
                let q = randomInterval()
                let got = entries(tree.overlapping(q))
                let want = oracle.overlapping(q)
                check(got == want, "overlapping(\(q)) = \(got), oracle \(want)")
                // Early stop after k results must yield exactly the first k.
                let k = Int.random(in: 0...3, using: &rng)
                var seen: [Entry] = []
                tree.forEachOverlapping(q) { i, p in
                    seen.append(Entry(interval: i, payload: p))
                    return seen.count < max(k, 1)
                }
                check(
                    seen == Array(want.prefix(max(k, 1))),
                    "forEachOverlapping(\(q)) stopping after \(max(k, 1)) gave \(seen)")
            case 72..<80:
                let q = randomInterval()
                let want = !oracle.overlapping(q).isEmpty
                check(tree.hasOverlap(q) == want, "hasOverlap(\(q)) != \(want)")
            case 80..<90:
                let length = Int64.random(in: 1...(2 * maxLength), using: &rng)
                let notBefore = Int64.random(in: -maxLength...(span + maxLength), using: &rng)
                let notAfterEnd: Int64 =
                    Int.random(in: 0..<5, using: &rng) == 0
                    ? Int64.max : notBefore + Int64.random(in: 0...(span + 2 * maxLength), using: &rng)
                let got = tree.firstFreeGap(length: length, notBefore: notBefore, notAfterEnd: notAfterEnd)
                let want = oracle.firstFreeGap(length: length, notBefore: notBefore, notAfterEnd: notAfterEnd)
                check(
                    got == want,
                    "firstFreeGap(length: \(length), notBefore: \(notBefore), notAfterEnd: \(notAfterEnd)) = \(String(describing: got)), oracle \(String(describing: want))"
                )
            case 90..<95:
                let t = Int64.random(in: -2...(span + maxLength + 2), using: &rng)
                check(
                    tree.maxEnd(ofEntriesStartingBefore: t) == oracle.maxEnd(before: t), "maxEnd(before: \(t)) mismatch"
                )
            default:
                let t = Int64.random(in: -2...(span + 2), using: &rng)
                check(
                    tree.minStart(atOrAfter: t) == oracle.minStart(atOrAfter: t), "minStart(atOrAfter: \(t)) mismatch")
            }

            // Queries are non-mutating, so invariants only need re-checking after inserts and removals.
            if roll < 62, let problem = tree.validate() { check(false, "validate(): \(problem)") }
            check(tree.count == oracle.items.count, "count \(tree.count), oracle \(oracle.items.count)")
            check(tree.isEmpty == oracle.items.isEmpty, "isEmpty mismatch")
            if step % 64 == 0 || step == config.operations - 1 {
                check(entries(tree.entries) == oracle.all, "entries differ from oracle")
            }
            if let failure {
                Issue.record("\(config) step=\(step): \(failure)", sourceLocation: sourceLocation)
                return
            }
        }
    }
}

// MARK: - Property tests against the oracle

extension IntervalTreeTests {
    @Suite struct Properties {
        /// Fixed seeds: the same thousands of operations on every run, across dense and sparse shapes.
        @Test(arguments: [
            ModelConfig(seed: 0x0BE1_7401, operations: 4000, span: 60, maxLength: 8, payloads: 3, capacity: 120),
            ModelConfig(seed: 0xDEAD_BEEF, operations: 4000, span: 400, maxLength: 40, payloads: 5, capacity: 200),
            ModelConfig(seed: 0x5EED_0003, operations: 4000, span: 5000, maxLength: 30, payloads: 1000, capacity: 400),
            ModelConfig(seed: 0x5EED_0004, operations: 3000, span: 20, maxLength: 3, payloads: 2, capacity: 60),
            ModelConfig(seed: 0x5EED_0005, operations: 3000, span: 1000, maxLength: 400, payloads: 4, capacity: 150),
        ])
        func matchesOracle(_ config: ModelConfig) {
            runModel(config)
        }

        /// Fresh seeds on every run (PropertyBased prints a `.fixedSeed(...)` to replay, and our message
        /// carries the SplitMix64 seed as well).
        @Test func matchesOracleRandomSeeds() async {
            await propertyCheck(count: 30, input: Gen.uint64(), Gen.int64(in: 10...500)) { seed, span in
                runModel(ModelConfig(seed: seed, operations: 300, span: span, maxLength: max(2, span / 8), payloads: 4))
            }
        }

        /// Inserting any batch and then removing it in any order keeps every invariant and ends empty.
        @Test func insertThenRemoveAllInAnyOrder() async {
            let interval = zip(Gen.int64(in: -50...50), Gen.int64(in: 1...20)).map { s, l in
                Interval(start: s, end: s + l)
            }
            let batch = zip(interval, Gen.int(in: 0...3)).array(of: 0...120)
            await propertyCheck(count: 60, input: batch, Gen.uint64()) { items, shuffleSeed in
                var tree = IntervalTree<Int>()
                for (i, p) in items { tree.insert(i, p) }
                #expect(tree.validate() == nil)
                #expect(tree.count == items.count)
                let want = items.enumerated()
                    .sorted { a, b in a.element.0 != b.element.0 ? a.element.0 < b.element.0 : a.offset < b.offset }
                    .map { Entry(interval: $0.element.0, payload: $0.element.1) }
                #expect(entries(tree.entries) == want)

                var rng = SplitMix64(seed: shuffleSeed)
                for (i, p) in items.shuffled(using: &rng) {
                    guard tree.remove(i, p) else {
                        Issue.record("remove(\(i), \(p)) failed, shuffle seed 0x\(String(shuffleSeed, radix: 16))")
                        return
                    }
                    if let problem = tree.validate() {
                        Issue.record("\(problem), shuffle seed 0x\(String(shuffleSeed, radix: 16))")
                        return
                    }
                }
                #expect(tree.isEmpty)
                #expect(tree.entries.isEmpty)
            }
        }

        /// `firstFreeGap` on wide, sparse timelines (the case where the jumps matter) agrees with the oracle
        /// and its answer really is free and in range.
        @Test func firstFreeGapSparse() async {
            let interval = zip(Gen.int64(in: 0...100_000), Gen.int64(in: 1...3_000)).map { s, l in
                Interval(start: s, end: s + l)
            }
            await propertyCheck(
                count: 80, input: interval.array(of: 0...60), Gen.int64(in: 1...5_000), Gen.int64(in: -1_000...100_000),
                Gen.int64(in: 0...120_000)
            ) { intervals, length, notBefore, window in
                var tree = IntervalTree<Int>()
                var oracle = Oracle()
                for (k, i) in intervals.enumerated() {
                    tree.insert(i, k)
                    oracle.insert(i, k)
                }
                let notAfterEnd = notBefore + window
                let got = tree.firstFreeGap(length: length, notBefore: notBefore, notAfterEnd: notAfterEnd)
                #expect(got == oracle.firstFreeGap(length: length, notBefore: notBefore, notAfterEnd: notAfterEnd))
                if let s = got {
                    #expect(s >= notBefore && s + length <= notAfterEnd)
                    #expect(!tree.hasOverlap(Interval(start: s, end: s + length)))
                }
            }
        }
    }
}

// MARK: - Examples and edge cases

extension IntervalTreeTests {
    @Suite struct Examples {
        @Test func intervalBasics() {
            let a = iv(0, 10), b = iv(10, 20)
            #expect(!a.overlaps(b) && !b.overlaps(a))
            #expect(a.overlaps(iv(9, 11)) && iv(9, 11).overlaps(b))
            #expect(iv(0, 100).overlaps(iv(40, 50)) && iv(40, 50).overlaps(iv(0, 100)))
            #expect(a.contains(0) && a.contains(9) && !a.contains(10) && !a.contains(-1))
            #expect(a.length == 10)
            #expect(a < b && iv(0, 5) < a && !(a < a))
            #expect(a.description == "[0, 10)")
        }

        @Test func touchingIntervalsDoNotOverlap() {
            var tree = IntervalTree<String>()
            tree.insert(iv(0, 10), "a")
            #expect(!tree.hasOverlap(iv(10, 20)))
            #expect(!tree.hasOverlap(iv(-5, 0)))
            #expect(tree.overlapping(iv(10, 20)).isEmpty)
            tree.insert(iv(10, 20), "b")
            #expect(tree.validate() == nil)
            #expect(tree.overlapping(iv(9, 10)).map(\.payload) == ["a"])
            #expect(tree.overlapping(iv(10, 11)).map(\.payload) == ["b"])
            #expect(tree.overlapping(iv(9, 11)).map(\.payload) == ["a", "b"])
            #expect(tree.firstFreeGap(length: 5, notBefore: 0, notAfterEnd: 100) == 20)
            #expect(tree.firstFreeGap(length: 5, notBefore: -5, notAfterEnd: 100) == -5)
            #expect(tree.firstFreeGap(length: 6, notBefore: -5, notAfterEnd: 100) == 20)
        }

        @Test func emptyTree() {
            let tree = IntervalTree<Int>()
            #expect(tree.isEmpty && tree.count == 0)
            #expect(tree.validate() == nil)
            #expect(tree.entries.isEmpty)
            #expect(tree.overlapping(iv(0, 10)).isEmpty)
            #expect(!tree.hasOverlap(iv(Int64.min, Int64.max)))
            #expect(tree.maxEnd(ofEntriesStartingBefore: 0) == nil)
            #expect(tree.minStart(atOrAfter: Int64.min) == nil)
            #expect(tree.firstFreeGap(length: 10, notBefore: 5, notAfterEnd: 15) == 5)
            #expect(tree.firstFreeGap(length: 10, notBefore: 5, notAfterEnd: 14) == nil)
            var copy = tree
            #expect(!removed(&copy, iv(0, 1), 0))
            #expect(copy.validate() == nil)
        }

        @Test func removingTheRootRepeatedly() {
            var tree = IntervalTree<Int>()
            var remaining: [Entry] = []
            for k in 0..<200 {
                let s = Int64((k * 37) % 101)
                tree.insert(iv(s, s + Int64(k % 7) + 1), k)
                remaining.append(Entry(interval: iv(s, s + Int64(k % 7) + 1), payload: k))
            }
            #expect(tree.validate() == nil)
            while !tree.isEmpty {
                // White-box: the root is whatever node `root` points at.
                let r = tree.nodes[Int(tree.root)]
                let root = Entry(interval: iv(r.start, r.end), payload: r.payload)
                #expect(removed(&tree, root.interval, root.payload))
                remaining.remove(at: remaining.firstIndex(of: root)!)
                if let problem = tree.validate() {
                    Issue.record("after removing root \(root): \(problem)")
                    return
                }
                #expect(tree.count == remaining.count)
            }
            #expect(tree.entries.isEmpty && remaining.isEmpty)
            tree.insert(iv(1, 2), 1)
            #expect(tree.validate() == nil && tree.count == 1)
        }

        @Test func valueSemantics() {
            var original = IntervalTree<Int>()
            for k in 0..<50 { original.insert(iv(Int64(k) * 10, Int64(k) * 10 + 15), k) }
            let before = entries(original.entries)

            var copy = original
            copy.insert(iv(1000, 1001), 99)
            #expect(removed(&copy, iv(0, 15), 0))
            #expect(removed(&copy, iv(250, 265), 25))
            #expect(copy.validate() == nil)
            #expect(copy.count == 49)

            #expect(original.validate() == nil)
            #expect(entries(original.entries) == before)
            #expect(original.hasOverlap(iv(0, 1)) && !copy.hasOverlap(iv(0, 1)))

            // And the other way round: mutating the original leaves an earlier copy intact.
            let snapshot = original
            original.remove(iv(490, 505), 49)
            #expect(entries(snapshot.entries) == before)
            #expect(original.count == 49)
        }

        @Test func duplicatesAreAMultisetInInsertionOrder() {
            var tree = IntervalTree<String>()
            tree.insert(iv(0, 10), "x")
            tree.insert(iv(0, 10), "y")
            tree.insert(iv(0, 10), "x")
            tree.insert(iv(0, 5), "z")
            #expect(tree.entries.map(\.payload) == ["z", "x", "y", "x"])
            #expect(removed(&tree, iv(0, 10), "x"))
            #expect(tree.entries.map(\.payload) == ["z", "y", "x"])
            #expect(!removed(&tree, iv(0, 10), "z"))
            #expect(!removed(&tree, iv(0, 11), "y"))
            #expect(removed(&tree, iv(0, 10), "x"))
            #expect(!removed(&tree, iv(0, 10), "x"))
            #expect(tree.entries.map(\.payload) == ["z", "y"])
            #expect(tree.validate() == nil)
        }

        @Test func maxEndAndMinStart() {
            var tree = IntervalTree<Int>()
            tree.insert(iv(0, 100), 0)
            tree.insert(iv(10, 20), 1)
            tree.insert(iv(50, 60), 2)
            #expect(tree.maxEnd(ofEntriesStartingBefore: 0) == nil)
            #expect(tree.maxEnd(ofEntriesStartingBefore: 1) == 100)
            #expect(tree.maxEnd(ofEntriesStartingBefore: 200) == 100)
            #expect(tree.minStart(atOrAfter: 0) == 0)
            #expect(tree.minStart(atOrAfter: 1) == 10)
            #expect(tree.minStart(atOrAfter: 50) == 50)
            #expect(tree.minStart(atOrAfter: 51) == nil)
        }

        @Test func firstFreeGapExamples() {
            var tree = IntervalTree<Int>()
            // Busy [0,10) [12,20) [15,30) [31,40): free gaps [10,12), [30,31), [40, ∞).
            for (k, i) in [iv(0, 10), iv(12, 20), iv(15, 30), iv(31, 40)].enumerated() { tree.insert(i, k) }
            #expect(tree.firstFreeGap(length: 2, notBefore: 0, notAfterEnd: 100) == 10)
            #expect(tree.firstFreeGap(length: 3, notBefore: 0, notAfterEnd: 100) == 40)
            #expect(tree.firstFreeGap(length: 1, notBefore: 11, notAfterEnd: 100) == 11)
            #expect(tree.firstFreeGap(length: 1, notBefore: 13, notAfterEnd: 100) == 30)
            #expect(tree.firstFreeGap(length: 3, notBefore: 0, notAfterEnd: 43) == 40)
            #expect(tree.firstFreeGap(length: 3, notBefore: 0, notAfterEnd: 42) == nil)
            #expect(tree.firstFreeGap(length: 5, notBefore: -10, notAfterEnd: 100) == -10)
            #expect(tree.firstFreeGap(length: 11, notBefore: -10, notAfterEnd: 100) == 40)
            #expect(tree.firstFreeGap(length: 1, notBefore: 50, notAfterEnd: 50) == nil)
        }

        @Test func extremeValuesDoNotOverflow() {
            var tree = IntervalTree<Int>()
            tree.insert(iv(Int64.min, -1), 0)
            tree.insert(iv(Int64.max - 10, Int64.max), 1)
            #expect(tree.validate() == nil)
            #expect(tree.firstFreeGap(length: 5, notBefore: Int64.min, notAfterEnd: Int64.max) == -1)
            #expect(tree.firstFreeGap(length: Int64.max, notBefore: Int64.min, notAfterEnd: Int64.max) == nil)
            #expect(tree.firstFreeGap(length: 5, notBefore: Int64.max - 12, notAfterEnd: Int64.max) == nil)
            #expect(tree.firstFreeGap(length: 1, notBefore: Int64.max - 12, notAfterEnd: Int64.max) == Int64.max - 12)
            #expect(tree.firstFreeGap(length: Int64.max - 1, notBefore: 0, notAfterEnd: Int64.max) == nil)
            #expect(tree.firstFreeGap(length: Int64.max - 10, notBefore: 0, notAfterEnd: Int64.max) == 0)
            #expect(tree.firstFreeGap(length: Int64.max - 9, notBefore: 0, notAfterEnd: Int64.max) == nil)
            #expect(tree.hasOverlap(iv(Int64.max - 1, Int64.max)))
            #expect(tree.maxEnd(ofEntriesStartingBefore: Int64.max) == Int64.max)
            #expect(tree.minStart(atOrAfter: Int64.min) == Int64.min)
        }

        /// Sorted input is the classic worst case for an unbalanced tree; `validate()` checks the AVL
        /// balance, and a large staircase exercises `firstFreeGap`'s jumps.
        @Test func sortedInsertionStaysBalanced() {
            var tree = IntervalTree<Int>()
            for k in 0..<5_000 { tree.insert(iv(Int64(k) * 10, Int64(k) * 10 + 15), k) }
            #expect(tree.validate() == nil)
            #expect(tree.firstFreeGap(length: 1, notBefore: 0, notAfterEnd: Int64.max) == 50_005)
            #expect(tree.overlapping(iv(20_000, 20_001)).map(\.payload) == [1_999, 2_000])
            for k in stride(from: 0, to: 5_000, by: 2) {
                #expect(removed(&tree, iv(Int64(k) * 10, Int64(k) * 10 + 15), k))
            }
            #expect(tree.validate() == nil)
            #expect(tree.count == 2_500)
            #expect(tree.firstFreeGap(length: 5, notBefore: 10, notAfterEnd: Int64.max) == 25)
            #expect(tree.firstFreeGap(length: 6, notBefore: 10, notAfterEnd: Int64.max) == 50_005)
        }
    }
}
