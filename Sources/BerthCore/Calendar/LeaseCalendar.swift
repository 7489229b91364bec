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
    public init(
        leaseID: String, reservationID: String, usage: ResourceUsage = .wholeHost, guaranteedUntil: Int64? = nil
    ) {
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
///
/// Hosts are numbered densely in the order the calendar first meets them (`number(for:)`), and the
/// trees live in an array indexed by that number, so hot paths never hash a host name. Beside the
/// per-host trees, the calendar keeps global indexes over all hosts: every allocation's start and
/// end in time order (`starts`, `ends`), so the planner can meet the hosts whose free gap fits a
/// window most tightly first without visiting every host, and the GPU-slice and instance-slot
/// allocations by time (`gpuUse`, `instanceUse`), so "which hosts are partly used in this window"
/// is one query.
public struct LeaseCalendar: Sendable {
    public private(set) var hostNumbers: [String: Int32] = [:]
    public private(set) var hostNames: [String] = []
    private(set) var trees: [IntervalTree<CalendarEntry>] = []
    /// Preemptible entries per host number, so hosts without any keep the O(log n) fast paths.
    private(set) var preemptibleCounts: [Int32] = []
    /// Numbers of the hosts that hold preemptible entries.
    public private(set) var hostsWithPreemptibles: Set<Int32> = []
    /// Start and end of every allocation, with its host number.
    public private(set) var starts = TimeIndex()
    public private(set) var ends = TimeIndex()
    /// GPU-slice and instance-slot allocations, payload the host number.
    public private(set) var gpuUse = IntervalTree<Int32>()
    public private(set) var instanceUse = IntervalTree<Int32>()
    public private(set) var allocationCount = 0
    /// How queries count preemptibles; set on a copy (cheap: the trees are shared until mutated).
    public var preemptibleView: PreemptibleView = .occupying

    /// The end of an allocation with no planned end (a preemptible not yet scheduled for preemption).
    public static let openEnd: Int64 = Timestamp.distantFuture.seconds

    public init() {}

    /// Builds the whole calendar at once (restart): `lists` as `CalendarBulkLoad.entriesByHost`
    /// makes them, per host in (start, end) order, equal windows in add order. The result answers
    /// every query as adding each lease, then each preemptible, would; the trees and the global
    /// indexes are built in O(n) from sorted input instead of n rebalancing inserts.
    public init(sortedEntriesByHost lists: consuming [String: CalendarBulkLoad.HostEntries]) {
        self.init()
        var byHost = lists
        var startItems: [TimeIndex.Item] = []
        var endItems: [TimeIndex.Item] = []
        var gpuItems: [(Interval, Int32)] = []
        var instanceItems: [(Interval, Int32)] = []
        for name in byHost.keys.sorted() {
            guard let list = byHost.removeValue(forKey: name) else { continue }
            let n = number(for: name)
            var preemptible: Int32 = 0
            for (iv, e) in list {
                startItems.append(.init(time: iv.start, host: n))
                endItems.append(.init(time: iv.end, host: n))
                switch e.usage {
                case .gpuSlices: gpuItems.append((iv, n))
                case .instances: instanceItems.append((iv, n))
                case .wholeHost: break
                }
                if e.isPreemptible { preemptible += 1 }
            }
            allocationCount += list.count
            if preemptible > 0 {
                preemptibleCounts[Int(n)] = preemptible
                hostsWithPreemptibles.insert(n)
            }
            trees[Int(n)] = IntervalTree(sorted: list)
        }
        starts = TimeIndex(startItems)
        ends = TimeIndex(endItems)
        func byWindow(_ a: (Interval, Int32), _ b: (Interval, Int32)) -> Bool {
            a.0.start != b.0.start ? a.0.start < b.0.start : a.0.end < b.0.end
        }
        gpuItems.sort(by: byWindow)
        instanceItems.sort(by: byWindow)
        gpuUse = IntervalTree(sorted: gpuItems)
        instanceUse = IntervalTree(sorted: instanceItems)
    }

    /// Preemptible entries per host name (hosts with none are absent).
    public var preemptibleEntries: [String: Int] {
        var out: [String: Int] = [:]
        for n in hostsWithPreemptibles { out[hostNames[Int(n)]] = Int(preemptibleCounts[Int(n)]) }
        return out
    }

    /// The host's number, assigning the next one if the calendar has not met it yet.
    public mutating func number(for host: String) -> Int32 {
        if let n = hostNumbers[host] { return n }
        let n = Int32(hostNames.count)
        hostNumbers[host] = n
        hostNames.append(host)
        trees.append(IntervalTree())
        preemptibleCounts.append(0)
        return n
    }

    @inline(__always)
    public func number(of host: String) -> Int32? { hostNumbers[host] }

    /// The part of an entry's interval that binds under the current view; nil if none does.
    @inline(__always)
    func binding(_ iv: Interval, _ e: CalendarEntry) -> Interval? {
        LeaseCalendar.binding(iv, e, preemptibleView)
    }

    /// Static, so that query closures capture no copy of the calendar.
    @inline(__always)
    static func binding(_ iv: Interval, _ e: CalendarEntry, _ view: PreemptibleView) -> Interval? {
        guard view == .guaranteedOnly, let gu = e.guaranteedUntil else { return iv }
        let end = Swift.min(iv.end, gu)
        return end > iv.start ? Interval(start: iv.start, end: end) : nil
    }

    /// Whether the view counts every entry of the host for its whole interval (no preemptible
    /// entries, or the occupying view): the global indexes then describe the host exactly.
    @inline(__always)
    public func viewIsExact(_ n: Int32) -> Bool {
        preemptibleView == .occupying || preemptibleCounts[Int(n)] == 0
    }

    public mutating func insert(host: String, interval: Interval, entry: CalendarEntry) {
        insert(number(for: host), interval: interval, entry: entry)
    }

    public mutating func insert(_ n: Int32, interval: Interval, entry: CalendarEntry) {
        trees[Int(n)].insert(interval, entry)
        allocationCount += 1
        starts.insert(.init(time: interval.start, host: n))
        ends.insert(.init(time: interval.end, host: n))
        switch entry.usage {
        case .gpuSlices: gpuUse.insert(interval, n)
        case .instances: instanceUse.insert(interval, n)
        case .wholeHost: break
        }
        if entry.isPreemptible {
            preemptibleCounts[Int(n)] += 1
            hostsWithPreemptibles.insert(n)
        }
    }

    @discardableResult
    public mutating func remove(host: String, interval: Interval, entry: CalendarEntry) -> Bool {
        guard let n = hostNumbers[host] else { return false }
        guard trees[Int(n)].remove(interval, entry) else { return false }
        allocationCount -= 1
        starts.remove(.init(time: interval.start, host: n))
        ends.remove(.init(time: interval.end, host: n))
        switch entry.usage {
        case .gpuSlices: gpuUse.remove(interval, n)
        case .instances: instanceUse.remove(interval, n)
        case .wholeHost: break
        }
        if entry.isPreemptible {
            preemptibleCounts[Int(n)] -= 1
            if preemptibleCounts[Int(n)] <= 0 {
                preemptibleCounts[Int(n)] = 0
                hostsWithPreemptibles.remove(n)
            }
        }
        return true
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
            // Not produced by the planner.
            usage = .gpuSlices(gpu: 0, slot: 0, size: a.size ?? 1, mediaExtensions: false)
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
                insert(
                    host: a.host, interval: lease.window,
                    entry: LeaseCalendar.entry(lease: lease, reservation: r, allocation: a))
            }
        }
    }

    public mutating func remove(_ lease: Lease) {
        guard lease.start < lease.end else { return }
        for r in lease.reservations {
            for a in r.allocations {
                remove(
                    host: a.host, interval: lease.window,
                    entry: LeaseCalendar.entry(lease: lease, reservation: r, allocation: a))
            }
        }
    }

    /// Slices of one GPU taken at any instant of the window (a slice must be free for all of it),
    /// whether a media-extension instance is among them; nil when the whole host is reserved.
    public func gpuOccupancy(host: String, gpu: Int, during window: Interval) -> (
        usedMask: UInt16, hasMediaExtension: Bool
    )? {
        guard let n = hostNumbers[host] else { return (0, false) }
        return gpuOccupancy(n, gpu: gpu, during: window)
    }

    public func gpuOccupancy(_ n: Int32, gpu: Int, during window: Interval) -> (
        usedMask: UInt16, hasMediaExtension: Bool
    )? {
        guard gpu >= 0 else { return gpuOccupancies(n, gpus: 0, during: window).map { _ in (0, false) } }
        return gpuOccupancies(n, gpus: gpu + 1, during: window)?[gpu]
    }

    /// `gpuOccupancy` of GPUs 0..<gpus from one visit of the host's tree; nil when the whole host is reserved.
    public func gpuOccupancies(_ n: Int32, gpus: Int, during window: Interval) -> [(
        usedMask: UInt16, hasMediaExtension: Bool
    )]? {
        var out = [(usedMask: UInt16, hasMediaExtension: Bool)](repeating: (0, false), count: gpus)
        var wholeHost = false
        let exact = viewIsExact(n)
        let view = preemptibleView
        trees[Int(n)].forEachOverlapping(window) { iv, e in
            if !exact, LeaseCalendar.binding(iv, e, view).map({ $0.overlaps(window) }) != true { return true }
            switch e.usage {
            case .wholeHost:
                wholeHost = true
                return false
            case .gpuSlices(let g, let slot, let size, let m) where g >= 0 && g < gpus:
                out[g].usedMask |= UInt16(((1 << size) - 1) << slot)
                out[g].hasMediaExtension = out[g].hasMediaExtension || m
            default:
                break
            }
            return true
        }
        return wholeHost ? nil : out
    }

    /// Instance allocations overlapping the window, for a peak-usage sweep; nil when the whole
    /// host is reserved.
    public func instanceLoad(host: String, during window: Interval)
        -> [(interval: Interval, vcpus: Int64, memoryMB: Int64, diskGB: Int64)]?
    {
        guard let n = hostNumbers[host] else { return [] }
        return instanceLoad(n, during: window)
    }

    public func instanceLoad(_ n: Int32, during window: Interval)
        -> [(interval: Interval, vcpus: Int64, memoryMB: Int64, diskGB: Int64)]?
    {
        var out: [(interval: Interval, vcpus: Int64, memoryMB: Int64, diskGB: Int64)] = []
        var wholeHost = false
        let exact = viewIsExact(n)
        let view = preemptibleView
        trees[Int(n)].forEachOverlapping(window) { iv, e in
            var iv = iv
            if !exact {
                guard let b = LeaseCalendar.binding(iv, e, view), b.overlaps(window) else { return true }
                iv = b
            }
            switch e.usage {
            case .wholeHost:
                wholeHost = true
                return false
            case .instances(let c, let v, let m, let d):
                out.append((iv, v * c, m * c, d * c))
            default:
                break
            }
            return true
        }
        return wholeHost ? nil : out
    }

    public func isFree(host: String, during window: Interval) -> Bool {
        guard let n = hostNumbers[host] else { return true }
        return isFree(n, during: window)
    }

    public func isFree(_ n: Int32, during window: Interval) -> Bool {
        if viewIsExact(n) { return !trees[Int(n)].hasOverlap(window) }
        var free = true
        let view = preemptibleView
        trees[Int(n)].forEachOverlapping(window) { iv, e in
            if LeaseCalendar.binding(iv, e, view).map({ $0.overlaps(window) }) == true { free = false }
            return free
        }
        return free
    }

    public func entries(host: String, overlapping window: Interval) -> [(interval: Interval, payload: CalendarEntry)] {
        guard let n = hostNumbers[host] else { return [] }
        return trees[Int(n)].overlapping(window)
    }

    /// Every entry of a host in time order.
    public func entries(host: String) -> [(interval: Interval, payload: CalendarEntry)] {
        guard let n = hostNumbers[host] else { return [] }
        return trees[Int(n)].entries
    }

    /// How much free time surrounds a free window on a host (capped per side), smaller meaning a
    /// tighter fit: placing there leaves long free runs elsewhere whole for later requests.
    public func slack(host: String, around window: Interval, cap: Int64 = LeaseCalendar.slackCap) -> Int64 {
        guard let n = hostNumbers[host] else { return 2 * cap }
        return slack(n, around: window, cap: cap)
    }

    /// Cap of each side of `slack`: a year.
    public static let slackCap: Int64 = 366 * 86_400

    public func slack(_ n: Int32, around window: Interval, cap: Int64 = LeaseCalendar.slackCap) -> Int64 {
        let before =
            trees[Int(n)].maxEnd(ofEntriesStartingBefore: window.start).map { Swift.min(window.start - $0, cap) } ?? cap
        let after = trees[Int(n)].minStart(atOrAfter: window.end).map { Swift.min($0 - window.end, cap) } ?? cap
        return before + after
    }

    /// `slack(n, around:)` if the host is free during the window, else nil; two descents of the
    /// host's tree instead of three when the view is exact: the host is free exactly when nothing
    /// starting before the window's end reaches past its start, and that same reach is where the
    /// free time before the window begins.
    public func slackIfFree(_ n: Int32, around window: Interval, cap: Int64 = LeaseCalendar.slackCap) -> Int64? {
        guard viewIsExact(n) else { return isFree(n, during: window) ? slack(n, around: window, cap: cap) : nil }
        let reach = trees[Int(n)].maxEnd(ofEntriesStartingBefore: window.end)
        if let reach, reach > window.start { return nil }
        let before = reach.map { Swift.min(window.start - $0, cap) } ?? cap
        let after = trees[Int(n)].minStart(atOrAfter: window.end).map { Swift.min($0 - window.end, cap) } ?? cap
        return before + after
    }

    /// The first instant at or after `t` at which a reservation (not a preemptible) begins to hold
    /// capacity on the host; nil if none is planned.
    public func nextReservationStart(host: String, atOrAfter t: Int64) -> Int64? {
        guard let n = hostNumbers[host], t < LeaseCalendar.openEnd else { return nil }
        let tree = trees[Int(n)]
        if preemptibleCounts[Int(n)] == 0 { return tree.minStart(atOrAfter: t) }
        var first: Int64? = nil
        tree.forEachOverlapping(Interval(start: t, end: LeaseCalendar.openEnd)) { iv, e in
            if !e.isPreemptible, iv.start >= t, first.map({ iv.start < $0 }) ?? true { first = iv.start }
            return true
        }
        return first
    }

    /// Reservation allocations on a host that hold capacity at or after `t`.
    public func reservationHolders(host: String, from t: Int64) -> [(interval: Interval, entry: CalendarEntry)] {
        guard let n = hostNumbers[host], t < LeaseCalendar.openEnd else { return [] }
        var out: [(Interval, CalendarEntry)] = []
        trees[Int(n)].forEachOverlapping(Interval(start: t, end: LeaseCalendar.openEnd)) { iv, e in
            if !e.isPreemptible { out.append((iv, e)) }
            return true
        }
        return out
    }

    /// Ends of allocations on a host inside a range: the only instants at which a window can begin
    /// to fit where it did not before.
    public func ends(host: String, in range: Interval, into out: inout [Int64]) {
        guard let n = hostNumbers[host] else { return }
        ends(n, in: range, into: &out)
    }

    public func ends(_ n: Int32, in range: Interval, into out: inout [Int64]) {
        let exact = viewIsExact(n)
        let view = preemptibleView
        trees[Int(n)].forEachOverlapping(range) { iv, e in
            let end = exact ? iv.end : (LeaseCalendar.binding(iv, e, view)?.end ?? iv.start)
            if end > range.start && end < range.end { out.append(end) }
            return true
        }
    }
}
