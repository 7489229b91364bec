/// Building a whole calendar at once, as a restart does: every allocation's entry grouped by host
/// and sorted, ready for `IntervalTree(sorted:)` (O(n) per host instead of n inserts with their
/// rebalancing).
public enum CalendarBulkLoad {
    /// One host's entries in `(start, end)` order; equal intervals in the order `LeaseCalendar.add`
    /// would have inserted them (leases in the given order, then preemptibles), so the trees built from
    /// them equal the trees those adds build.
    public typealias HostEntries = [(Interval, CalendarEntry)]

    /// The entries `add(_: Lease)` for every lease and then `add(_: Preemptible)` for every preemptible
    /// would insert, per host, each list sorted by `(start, end, insertion order)`. The same leases are
    /// skipped as there (not occupying the calendar, or an empty window), as are preemptibles without
    /// an interval.
    public static func entriesByHost(leases: some Collection<Lease>, preemptibles: some Collection<Preemptible>)
        -> [String: HostEntries]
    {
        // Rather than sorting 10,000 lists, sort the leases and preemptibles once by their window,
        // keeping add order among equal windows (the position is the last key), and append in that
        // order: every host's list then comes out in (start, end, add order) by construction.
        let leases = Array(leases)
        let preemptibles = Array(preemptibles)
        var order: [(start: Int64, end: Int64, position: Int)] = []
        order.reserveCapacity(leases.count + preemptibles.count)
        var byHost: [String: HostEntries] = [:]
        // Through buffer pointers, so a lease is read in place rather than copied (with a retain of
        // each of its strings and arrays) for every look.
        leases.withUnsafeBufferPointer { leases in
            preemptibles.withUnsafeBufferPointer { preemptibles in
                for k in leases.indices where leases[k].status.occupiesCalendar && leases[k].start < leases[k].end {
                    order.append((leases[k].start.seconds, leases[k].end.seconds, k))
                }
                let preemptiblesFrom = leases.count
                for k in preemptibles.indices {
                    guard let iv = preemptibles[k].interval else { continue }
                    order.append((iv.start, iv.end, preemptiblesFrom + k))
                }
                order.sort { a, b in
                    a.start != b.start ? a.start < b.start : a.end != b.end ? a.end < b.end : a.position < b.position
                }
                for item in order {
                    let window = Interval(start: item.start, end: item.end)
                    if item.position < preemptiblesFrom {
                        for r in leases[item.position].reservations {
                            for a in r.allocations {
                                byHost[a.host, default: []].append(
                                    (
                                        window,
                                        LeaseCalendar.entry(lease: leases[item.position], reservation: r, allocation: a)
                                    ))
                            }
                        }
                    } else {
                        let p = item.position - preemptiblesFrom
                        for e in preemptibles[p].calendarEntries {
                            byHost[preemptibles[p].host, default: []].append((window, e))
                        }
                    }
                }
            }
        }
        return byHost
    }

    /// One tree per host from `entriesByHost`'s lists, each built in O(n) by `IntervalTree(sorted:)`.
    /// Takes the lists over: every list is moved into its tree, not copied.
    public static func trees(_ byHost: consuming [String: HostEntries]) -> [String: IntervalTree<CalendarEntry>] {
        var lists = byHost
        var trees: [String: IntervalTree<CalendarEntry>] = [:]
        trees.reserveCapacity(lists.count)
        for host in Array(lists.keys) {
            // Removing the list leaves it uniquely referenced, so the tree moves its entries.
            guard let list = lists.removeValue(forKey: host) else { continue }
            trees[host] = IntervalTree(sorted: list)
        }
        return trees
    }

    /// Preemptible entries per host (what `LeaseCalendar.preemptibleEntries` counts).
    public static func preemptibleCounts(_ byHost: [String: HostEntries]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for (host, list) in byHost {
            let n = list.reduce(0) { $0 + ($1.1.isPreemptible ? 1 : 0) }
            if n > 0 { counts[host] = n }
        }
        return counts
    }
}
