extension IntervalTree {
    /// Checks every invariant the queries rely on (key order, AVL heights and balance, the max-end
    /// augmentation, dense storage with every node reachable exactly once). For tests; O(n).
    public func validate() -> String? {
        if nodes.isEmpty {
            return root == Self.none ? nil : "empty storage but root is \(root)"
        }
        guard root >= 0 && Int(root) < nodes.count else { return "root index \(root) out of range" }
        var seen = [Bool](repeating: false, count: nodes.count)
        var visited = 0
        var previous: (Int64, Int64, UInt64)? = nil
        var error: String? = nil

        /// Returns (height, maxEnd) of the subtree, or nil after recording an error.
        func check(_ i: Int32) -> (Int32, Int64)? {
            if i < 0 { return (0, Int64.min) }
            guard Int(i) < nodes.count else {
                error = "node index \(i) out of range"
                return nil
            }
            guard !seen[Int(i)] else {
                error = "node \(i) reachable twice"
                return nil
            }
            seen[Int(i)] = true
            visited += 1
            let n = nodes[Int(i)]
            guard let (lh, lm) = check(n.left) else { return nil }
            if n.start >= n.end {
                error = "node \(i) has empty interval [\(n.start), \(n.end))"
                return nil
            }
            if let p = previous, !Self.less(p.0, p.1, p.2, n.start, n.end, n.seq) {
                error =
                    "order violated at node \(i): (\(p.0), \(p.1), #\(p.2)) before (\(n.start), \(n.end), #\(n.seq))"
                return nil
            }
            if n.seq >= nextSeq {
                error = "node \(i) has sequence \(n.seq) >= next \(nextSeq)"
                return nil
            }
            previous = (n.start, n.end, n.seq)
            guard let (rh, rm) = check(n.right) else { return nil }
            let h = max(lh, rh) + 1
            if n.height != h {
                error = "node \(i) height \(n.height), expected \(h)"
                return nil
            }
            if abs(lh - rh) > 1 {
                error = "node \(i) unbalanced: left \(lh), right \(rh)"
                return nil
            }
            let m = max(n.end, max(lm, rm))
            if n.maxEnd != m {
                error = "node \(i) maxEnd \(n.maxEnd), expected \(m)"
                return nil
            }
            return (h, m)
        }

        guard check(root) != nil else { return error }
        if visited != nodes.count { return "\(nodes.count - visited) node(s) unreachable from the root" }
        return nil
    }
}
