/// What an allocation takes from its host while it lasts.
public enum ResourceUsage: Sendable, Hashable {
    /// The whole host: nothing else may share it.
    case wholeHost
    /// Memory slices `[slot, slot + size)` of one GPU (MIG instance).
    case gpuSlices(gpu: Int, slot: Int, size: Int, mediaExtensions: Bool)
    /// `count` instance slots of one size.
    case instances(count: Int64, vcpus: Int64, memoryMB: Int64, diskGB: Int64)
}

/// Which reservation of which lease holds an interval on a resource, and how much of it.
///
/// A preemptible's entries have an empty `leaseID`, its id as `reservationID`, and
/// `guaranteedUntil`: they bind reservations only before that instant (see `PreemptibleView`).
public struct CalendarEntry: Sendable, Hashable {
    public var leaseID: String
    public var reservationID: String
    public var usage: ResourceUsage
    public var guaranteedUntil: Int64?
    public init(leaseID: String, reservationID: String, usage: ResourceUsage = .wholeHost, guaranteedUntil: Int64? = nil) {
        self.leaseID = leaseID
        self.reservationID = reservationID
        self.usage = usage
        self.guaranteedUntil = guaranteedUntil
    }

    public var isPreemptible: Bool { guaranteedUntil != nil }
}

/// How the calendar's queries count preemptibles.
public enum PreemptibleView: Sendable, Hashable {
    /// For as long as they run (until ended or preempted, open-ended otherwise): placing here
    /// preempts nobody. Used for backfill and for a reservation's first placement attempt.
    case occupying
    /// Only until `guaranteedUntil`: after it their capacity may be given to a reservation, and
    /// they are then preempted. Used when no placement avoids preemption.
    case guaranteedOnly
}

/// Every allocation over time, one interval tree per host, so "is this host free in this window"
/// costs O(log n) however many leases exist.
public struct LeaseCalendar: Sendable {
    public private(set) var trees: [String: IntervalTree<CalendarEntry>] = [:]
    /// Preemptible entries per host, so hosts without any keep the O(log n) fast paths.
    public private(set) var preemptibleEntries: [String: Int] = [:]
    /// How queries count preemptibles; set on a copy (cheap: the trees are shared until mutated).
    public var preemptibleView: PreemptibleView = .occupying

    /// The end of an allocation with no planned end (a preemptible not yet scheduled for preemption).
    public static let openEnd: Int64 = Timestamp.distantFuture.seconds

    public init() {}

    /// The part of an entry's interval that binds under the current view; nil if none does.
    @inline(__always)
    func binding(_ iv: Interval, _ e: CalendarEntry) -> Interval? {
        guard preemptibleView == .guaranteedOnly, let gu = e.guaranteedUntil else { return iv }
        let end = Swift.min(iv.end, gu)
        return end > iv.start ? Interval(start: iv.start, end: end) : nil
    }

    @inline(__always)
    func viewIsExact(host: String) -> Bool {
        preemptibleView == .occupying || (preemptibleEntries[host] ?? 0) == 0
    }

    public var allocationCount: Int { trees.values.reduce(0) { $0 + $1.count } }

    public mutating func insert(host: String, interval: Interval, entry: CalendarEntry) {
        trees[host, default: IntervalTree()].insert(interval, entry)
        if entry.isPreemptible { preemptibleEntries[host, default: 0] += 1 }
    }

    @discardableResult
    public mutating func remove(host: String, interval: Interval, entry: CalendarEntry) -> Bool {
        guard var tree = trees[host] else { return false }
        trees[host] = nil  // keep the tree uniquely referenced while mutating it
        let removed = tree.remove(interval, entry)
        if !tree.isEmpty { trees[host] = tree }
        if removed && entry.isPreemptible {
            let n = (preemptibleEntries[host] ?? 1) - 1
            preemptibleEntries[host] = n > 0 ? n : nil
        }
        return removed
    }

    /// Adds a preemptible's entries over `[created, occupiedUntil)`; an ended one that never ran is skipped.
    public mutating func add(_ p: Preemptible) {
        guard let iv = p.interval else { return }
        for e in p.calendarEntries { insert(host: p.host, interval: iv, entry: e) }
    }

    public mutating func remove(_ p: Preemptible) {
        guard let iv = p.interval else { return }
        for e in p.calendarEntries { remove(host: p.host, interval: iv, entry: e) }
    }

    /// The calendar entry of one allocation of a reservation.
    public static func entry(lease: Lease, reservation r: Reservation, allocation a: Allocation) -> CalendarEntry {
        let usage: ResourceUsage
        switch r.request.kind {
        case .host:
            usage = .wholeHost
        case _ where a.gpu != nil:
            // A GPU slice, of a gpu reservation or of an instance reservation's `gpu_profile`.
            usage = .gpuSlices(
                gpu: a.gpu ?? 0, slot: a.slot ?? 0, size: a.size ?? 1,
                mediaExtensions: (a.profile ?? r.request.profile ?? "").hasSuffix("+me"))
        case .gpu:
            usage = .gpuSlices(gpu: 0, slot: 0, size: a.size ?? 1, mediaExtensions: false)  // not produced by the planner
        case .instance:
            usage = .instances(
                count: Int64(a.slots ?? 1), vcpus: r.request.vcpus ?? 0, memoryMB: r.request.memoryMB ?? 0,
                diskGB: r.request.diskGB ?? 0)
        }
        return CalendarEntry(leaseID: lease.id, reservationID: r.id, usage: usage)
    }

    /// Adds every allocation of a lease that holds capacity.
    public mutating func add(_ lease: Lease) {
        guard lease.status.occupiesCalendar, lease.start < lease.end else { return }
        for r in lease.reservations {
            for a in r.allocations {
                insert(host: a.host, interval: lease.window, entry: LeaseCalendar.entry(lease: lease, reservation: r, allocation: a))
            }
        }
    }

    public mutating func remove(_ lease: Lease) {
        guard lease.start < lease.end else { return }
        for r in lease.reservations {
            for a in r.allocations {
                remove(host: a.host, interval: lease.window, entry: LeaseCalendar.entry(lease: lease, reservation: r, allocation: a))
            }
        }
    }

    /// Slices of one GPU taken at any instant of the window (a slice must be free for all of it),
    /// whether a media-extension instance is among them; nil when the whole host is reserved.
    public func gpuOccupancy(host: String, gpu: Int, during window: Interval) -> (usedMask: UInt16, hasMediaExtension: Bool)? {
        var mask: UInt16 = 0
        var me = false
        var wholeHost = false
        let exact = viewIsExact(host: host)
        trees[host]?.forEachOverlapping(window) { iv, e in
            if !exact, binding(iv, e).map({ $0.overlaps(window) }) != true { return true }
            switch e.usage {
            case .wholeHost:
                wholeHost = true
                return false
            case .gpuSlices(let g, let slot, let size, let m) where g == gpu:
                mask |= UInt16(((1 << size) - 1) << slot)
                me = me || m
            default:
                break
            }
            return true
        }
        return wholeHost ? nil : (mask, me)
    }

    /// Instance allocations overlapping the window, for a peak-usage sweep; nil when the whole
    /// host is reserved.
    public func instanceLoad(host: String, during window: Interval)
        -> [(interval: Interval, vcpus: Int64, memoryMB: Int64, diskGB: Int64)]?
    {
        var out: [(interval: Interval, vcpus: Int64, memoryMB: Int64, diskGB: Int64)] = []
        var wholeHost = false
        let exact = viewIsExact(host: host)
        trees[host]?.forEachOverlapping(window) { iv, e in
            var iv = iv
            if !exact {
                guard let b = binding(iv, e), b.overlaps(window) else { return true }
                iv = b
            }
            switch e.usage {
            case .wholeHost:
                wholeHost = true
                return false
            case .instances(let n, let v, let m, let d):
                out.append((iv, v * n, m * n, d * n))
            default:
                break
            }
            return true
        }
        return wholeHost ? nil : out
    }

    public func isFree(host: String, during window: Interval) -> Bool {
        guard let tree = trees[host] else { return true }
        if viewIsExact(host: host) { return !tree.hasOverlap(window) }
        var free = true
        tree.forEachOverlapping(window) { iv, e in
            if binding(iv, e).map({ $0.overlaps(window) }) == true { free = false }
            return free
        }
        return free
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

    /// The first instant at or after `t` at which a reservation (not a preemptible) begins to hold
    /// capacity on the host; nil if none is planned.
    public func nextReservationStart(host: String, atOrAfter t: Int64) -> Int64? {
        guard let tree = trees[host], t < LeaseCalendar.openEnd else { return nil }
        if (preemptibleEntries[host] ?? 0) == 0 { return tree.minStart(atOrAfter: t) }
        var first: Int64? = nil
        tree.forEachOverlapping(Interval(start: t, end: LeaseCalendar.openEnd)) { iv, e in
            if !e.isPreemptible, iv.start >= t, first.map({ iv.start < $0 }) ?? true { first = iv.start }
            return true
        }
        return first
    }

    /// Reservation allocations on a host that hold capacity at or after `t`.
    public func reservationHolders(host: String, from t: Int64) -> [(interval: Interval, entry: CalendarEntry)] {
        guard let tree = trees[host], t < LeaseCalendar.openEnd else { return [] }
        var out: [(Interval, CalendarEntry)] = []
        tree.forEachOverlapping(Interval(start: t, end: LeaseCalendar.openEnd)) { iv, e in
            if !e.isPreemptible { out.append((iv, e)) }
            return true
        }
        return out
    }

    /// Ends of allocations on a host inside a range: the only instants at which a window can begin
    /// to fit where it did not before.
    public func ends(host: String, in range: Interval, into out: inout [Int64]) {
        let exact = viewIsExact(host: host)
        trees[host]?.forEachOverlapping(range) { iv, e in
            let end = exact ? iv.end : (binding(iv, e)?.end ?? iv.start)
            if end > range.start && end < range.end { out.append(end) }
            return true
        }
    }
}
