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
public struct CalendarEntry: Sendable, Hashable {
    public var leaseID: String
    public var reservationID: String
    public var usage: ResourceUsage
    public init(leaseID: String, reservationID: String, usage: ResourceUsage = .wholeHost) {
        self.leaseID = leaseID
        self.reservationID = reservationID
        self.usage = usage
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
        trees[host]?.forEachOverlapping(window) { _, e in
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
        trees[host]?.forEachOverlapping(window) { iv, e in
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
