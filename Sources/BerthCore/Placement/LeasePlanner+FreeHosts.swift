/// The search for the free hosts that fit a window most tightly, without visiting every host.
extension LeasePlanner {
    /// Up to `count` hosts (positions in `hosts`) free during `window`, best first by
    /// (`rank(position)`, `LeaseCalendar.slack`, name); `rank` is nil for hosts not wanted and never
    /// below `minRank`. The same answer as ranking every free host, without visiting them all:
    ///
    /// A free host's slack is its distance to the latest allocation ending at or before the window
    /// plus the distance to the earliest one starting at or after it (each capped). Walking the
    /// calendar's `ends` backward from the window's start and its `starts` forward from its end,
    /// always on the nearer side, meets hosts in an order whose running sum of the two distances is
    /// a lower bound on the slack of every host not met yet; once `count` hosts beat that bound the
    /// rest cannot do better. Hosts met are ranked exactly (O(log n) each). Hosts never met within
    /// the caps all have the largest slack, so the tie is broken by name. Hosts with preemptible
    /// entries counted only partly (guaranteed-only view) don't follow the global indexes and are
    /// ranked up front.
    /// `tightestFree`'s answer by ranking every wanted free host: for small candidate sets.
    func rankEveryFree(window: Interval, count: Int, among positions: [Int], rank: (Int) -> Int?) -> [Int] {
        var ranked: [(rank: Int, slack: Int64, position: Int)] = []
        for pos in positions {
            guard let slack = calendar.slackIfFree(inventory.numbers[pos], around: window), let rk = rank(pos) else {
                continue
            }
            ranked.append((rk, slack, pos))
        }
        ranked.sort { ($0.rank, $0.slack, $0.position) < ($1.rank, $1.slack, $1.position) }
        return ranked.prefix(count).map(\.position)
    }

    func tightestFree(window: Interval, count: Int, minRank: Int, rank: (Int) -> Int?) -> [Int] {
        guard count > 0 else { return [] }
        struct Candidate: Comparable {
            var rank: Int
            var slack: Int64
            var position: Int  // name order
            static func < (a: Candidate, b: Candidate) -> Bool {
                (a.rank, a.slack, a.position) < (b.rank, b.slack, b.position)
            }
        }
        let cap = LeaseCalendar.slackCap
        var best: [Candidate] = []  // ascending, at most `count`
        best.reserveCapacity(count + 1)
        /// Whether a host whose slack is at least `lowerBound` could still enter `best`.
        func couldEnter(_ lowerBound: Int64) -> Bool {
            best.count < count || (minRank, lowerBound) <= (best[count - 1].rank, best[count - 1].slack)
        }
        /// Ranks a host exactly from its own tree (the only per-host memory the search touches).
        func rankExactly(_ n: Int32) {
            guard let slack = calendar.slackIfFree(n, around: window), let pos = inventory.position(ofNumber: n),
                let rk = rank(pos)
            else { return }
            let c = Candidate(rank: rk, slack: slack, position: pos)
            if best.count == count {
                guard c < best[count - 1] else { return }
                best.removeLast()
            }
            var at = best.count
            while at > 0 && c < best[at - 1] { at -= 1 }
            best.insert(c, at: at)
        }
        var seen = [Bool](repeating: false, count: calendar.hostNames.count)
        func meet(_ n: Int32) {
            guard !seen[Int(n)] else { return }
            seen[Int(n)] = true
            rankExactly(n)
        }
        if calendar.preemptibleView == .guaranteedOnly {
            for n in calendar.hostsWithPreemptibles { meet(n) }
        }
        let ends = calendar.ends, starts = calendar.starts
        var back = ends.cursor(atTime: window.start + 1)
        var forward = starts.cursor(atTime: window.end)
        var nextBack = ends.previous(&back)
        var nextForward = starts.next(&forward)
        while true {
            let db = nextBack.map { Swift.min(window.start - $0.time, cap) } ?? cap
            let df = nextForward.map { Swift.min($0.time - window.end, cap) } ?? cap
            if best.count == count, !couldEnter(db + df) { return best.map(\.position) }
            if db >= cap && df >= cap { break }
            if db <= df {
                meet(nextBack!.host)
                nextBack = ends.previous(&back)
            } else {
                meet(nextForward!.host)
                nextForward = starts.next(&forward)
            }
        }
        // Every host not met has the largest slack: name order decides.
        for pos in hosts.indices {
            if best.count == count, best[count - 1] < Candidate(rank: minRank, slack: 2 * cap, position: pos) { break }
            let n = inventory.numbers[pos]
            meet(n)
        }
        return best.map(\.position)
    }
}
