/// Which reservation of which lease holds an interval on a resource.
public struct CalendarEntry: Sendable, Hashable {
    public var leaseID: String
    public var reservationID: String
    public init(leaseID: String, reservationID: String) {
        self.leaseID = leaseID
        self.reservationID = reservationID
    }
}

/// Every allocation over time, one interval tree per host, so "is this host free in this window"
/// costs O(log n) however many leases exist.
public struct LeaseCalendar: Sendable {
    public private(set) var trees: [String: IntervalTree<CalendarEntry>] = [:]

    public init() {}

    public var allocationCount: Int { trees.values.reduce(0) { $0 + $1.count } }

    public mutating func insert(host: String, interval: Interval, entry: CalendarEntry) {
        trees[host, default: IntervalTree()].insert(interval, entry)
    }

    @discardableResult
    public mutating func remove(host: String, interval: Interval, entry: CalendarEntry) -> Bool {
        guard var tree = trees[host] else { return false }
        trees[host] = nil  // keep the tree uniquely referenced while mutating it
        let removed = tree.remove(interval, entry)
        if !tree.isEmpty { trees[host] = tree }
        return removed
    }

    /// Adds every allocation of a lease that holds capacity.
    public mutating func add(_ lease: Lease) {
        guard lease.status.occupiesCalendar, lease.start < lease.end else { return }
        for r in lease.reservations {
            let entry = CalendarEntry(leaseID: lease.id, reservationID: r.id)
            for a in r.allocations { insert(host: a.host, interval: lease.window, entry: entry) }
        }
    }

    public mutating func remove(_ lease: Lease) {
        guard lease.start < lease.end else { return }
        for r in lease.reservations {
            let entry = CalendarEntry(leaseID: lease.id, reservationID: r.id)
            for a in r.allocations { remove(host: a.host, interval: lease.window, entry: entry) }
        }
    }

    public func isFree(host: String, during window: Interval) -> Bool {
        guard let tree = trees[host] else { return true }
        return !tree.hasOverlap(window)
    }

    public func entries(host: String, overlapping window: Interval) -> [(interval: Interval, payload: CalendarEntry)] {
        trees[host]?.overlapping(window) ?? []
    }

    /// How much free time surrounds a free window on a host (capped per side), smaller meaning a
    /// tighter fit: placing there leaves long free runs elsewhere whole for later requests.
    public func slack(host: String, around window: Interval, cap: Int64 = 366 * 86_400) -> Int64 {
        guard let tree = trees[host] else { return 2 * cap }
        let before = tree.maxEnd(ofEntriesStartingBefore: window.start).map { Swift.min(window.start - $0, cap) } ?? cap
        let after = tree.minStart(atOrAfter: window.end).map { Swift.min($0 - window.end, cap) } ?? cap
        return before + after
    }

    /// Ends of allocations on a host inside a range: the only instants at which a window can begin
    /// to fit where it did not before.
    public func ends(host: String, in range: Interval, into out: inout [Int64]) {
        trees[host]?.forEachOverlapping(range) { iv, _ in
            if iv.end > range.start && iv.end < range.end { out.append(iv.end) }
            return true
        }
    }
}
