/// Instance slots on hosts over time (pure: no I/O, no clock, no calendar access).
///
/// A host's vcpus, memory and disk are shared by the instance slots of every reservation on it.
/// What a new reservation may take in a window is the capacity minus the usage at the *busiest
/// instant* of the window, found by a sweep over the endpoints of the overlapping allocations. A
/// high-water mark of the window (the sum of everything that overlaps it) would over-count: two
/// allocations that follow each other inside the window never coexist and do not add up.
///
/// Hosts reserved whole (`kind: "host"`) are not shared with slots: the planner leaves hosts with a
/// whole-host allocation in the window out of the candidates (and, conversely, does not give a
/// host with slots in the window to a whole-host request).

/// vcpus, memory (MB) and disk (GB): a host's capacity, one instance's size, or a usage.
public struct InstanceSize: Sendable, Hashable, CustomStringConvertible {
    public var vcpus: Int64
    public var memoryMB: Int64
    public var diskGB: Int64

    public init(vcpus: Int64, memoryMB: Int64, diskGB: Int64) {
        self.vcpus = vcpus
        self.memoryMB = memoryMB
        self.diskGB = diskGB
    }

    public static let zero = InstanceSize(vcpus: 0, memoryMB: 0, diskGB: 0)

    public static func + (a: InstanceSize, b: InstanceSize) -> InstanceSize {
        InstanceSize(vcpus: a.vcpus + b.vcpus, memoryMB: a.memoryMB + b.memoryMB, diskGB: a.diskGB + b.diskGB)
    }

    public static func - (a: InstanceSize, b: InstanceSize) -> InstanceSize {
        InstanceSize(vcpus: a.vcpus - b.vcpus, memoryMB: a.memoryMB - b.memoryMB, diskGB: a.diskGB - b.diskGB)
    }

    public static func * (a: InstanceSize, n: Int) -> InstanceSize {
        let k = Int64(n)
        return InstanceSize(vcpus: a.vcpus * k, memoryMB: a.memoryMB * k, diskGB: a.diskGB * k)
    }

    /// Each dimension at most `other`'s.
    public func fits(in other: InstanceSize) -> Bool {
        vcpus <= other.vcpus && memoryMB <= other.memoryMB && diskGB <= other.diskGB
    }

    /// Per-dimension maximum.
    public func max(_ other: InstanceSize) -> InstanceSize {
        InstanceSize(
            vcpus: Swift.max(vcpus, other.vcpus), memoryMB: Swift.max(memoryMB, other.memoryMB),
            diskGB: Swift.max(diskGB, other.diskGB))
    }

    public var description: String { "\(vcpus) vcpus/\(memoryMB) MB/\(diskGB) GB" }
}

/// One allocation of instance slots on a host: when, and its total size (slots × instance size).
public struct InstanceUsage: Sendable, Hashable {
    public var interval: Interval
    public var total: InstanceSize

    public init(interval: Interval, total: InstanceSize) {
        self.interval = interval
        self.total = total
    }

    /// `slots` instances of `size` each.
    public init(interval: Interval, slots: Int, of size: InstanceSize) {
        self.init(interval: interval, total: size * slots)
    }
}

public enum InstanceAffinity: String, Sendable, CaseIterable {
    /// All of a reservation's instances on one host.
    case sameHost = "same_host"
    /// At most one instance of the reservation per host.
    case differentHost = "different_host"
}

/// Where a reservation's instances go on one host: the contract's `{host, slots}`.
public struct InstanceSlotAssignment: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var slots: Int

    public init(host: String, slots: Int) {
        self.host = host
        self.slots = slots
    }

    /// From a stored allocation; nil unless it has `slots`.
    public init?(_ allocation: Allocation) {
        guard let slots = allocation.slots else { return nil }
        self.init(host: allocation.host, slots: slots)
    }

    public var allocation: Allocation { Allocation(host: host, slots: slots) }

    public var description: String { "\(host)×\(slots)" }
}

/// One host a request may use, with its peak usage during the request's window.
public struct InstanceHostLoad: Sendable, Hashable {
    public var host: String
    public var capacity: InstanceSize
    /// Usage at the busiest instant of the window, per dimension.
    public var peak: InstanceSize
    /// At most this many more instances on this host whatever the resources, e.g. the free GPU
    /// slices of the request's `gpu_profile` there. nil: no such limit.
    public var limit: Int?
    /// Time within the window during which nothing runs on the host: what a placement here turns
    /// from idle to busy. 0 for a host busy throughout the window.
    public var idleTime: Int64
    /// Free time around the window on this host (smaller is a tighter fit in time); a late
    /// tie-break only, 0 when unknown.
    public var slack: Int64

    /// A load known by its peak only; `idleTime` then defaults to 0 for a host with any usage and 1
    /// for an idle one (what matters is the order: busy hosts first).
    public init(
        host: String, capacity: InstanceSize, peak: InstanceSize = .zero, idleTime: Int64? = nil, limit: Int? = nil,
        slack: Int64 = 0
    ) {
        self.host = host
        self.capacity = capacity
        self.peak = peak
        self.idleTime = idleTime ?? (peak == .zero ? 1 : 0)
        self.limit = limit
        self.slack = slack
    }

    /// The load from the instance allocations on the host (those outside `window` are ignored).
    public init(
        host: String, capacity: InstanceSize, usages: [InstanceUsage], window: Interval, limit: Int? = nil,
        slack: Int64 = 0
    ) {
        let (peak, idle) = InstanceFit.sweep(usages, within: window)
        self.init(host: host, capacity: capacity, peak: peak, idleTime: idle, limit: limit, slack: slack)
    }

    /// The load from `LeaseCalendar.instanceLoad(host:during:)`'s answer: each overlapping instance
    /// allocation with its totals (slots × size).
    public init(
        host: String, capacity: InstanceSize,
        load: [(interval: Interval, vcpus: Int64, memoryMB: Int64, diskGB: Int64)],
        window: Interval, limit: Int? = nil, slack: Int64 = 0
    ) {
        self.init(
            host: host, capacity: capacity,
            usages: load.map {
                InstanceUsage(
                    interval: $0.interval,
                    total: InstanceSize(vcpus: $0.vcpus, memoryMB: $0.memoryMB, diskGB: $0.diskGB))
            },
            window: window, limit: limit, slack: slack)
    }

    /// Whether anything runs on the host during the window.
    public var isPartlyUsed: Bool { peak != .zero }

    /// How many more instances of this size fit at every instant of the window (0 if the host is
    /// already over capacity). A dimension the request does not use (0) never limits.
    public func maxAdditional(vcpus: Int64, memory: Int64, disk: Int64) -> Int {
        // No arrays here: this runs in the allocator's inner loop.
        func fit(_ cap: Int64, _ used: Int64, _ want: Int64) -> Int64 {
            want > 0 ? Swift.max(0, cap - used) / want : Int64(Int.max)
        }
        var n = Swift.min(
            fit(capacity.vcpus, peak.vcpus, vcpus), fit(capacity.memoryMB, peak.memoryMB, memory),
            fit(capacity.diskGB, peak.diskGB, disk))
        if let limit { n = Swift.min(n, Int64(Swift.max(0, limit))) }
        return Int(n)
    }

    public func maxAdditional(_ size: InstanceSize) -> Int {
        maxAdditional(vcpus: size.vcpus, memory: size.memoryMB, disk: size.diskGB)
    }

    /// Records `slots` new instances held for the whole window (so they add to the peak).
    public mutating func add(slots: Int, of size: InstanceSize) {
        peak = peak + size * slots
        if slots > 0 { idleTime = 0 }
        if let l = limit { limit = l - slots }
    }

    /// What is left per dimension after `slots` more instances, as millionths of the capacity summed
    /// over the dimensions (a dimension with no capacity counts 0): smaller is a tighter fit.
    func leftoverScore(after slots: Int, of size: InstanceSize) -> Int64 {
        let used = peak + size * slots
        // Full-width product: capacities take any Int64, and left × 10⁶ may not fit in one (the quotient does).
        func part(_ cap: Int64, _ u: Int64) -> Int64 {
            guard cap > 0 else { return 0 }
            let left = Swift.max(0, cap - u)
            return cap.dividingFullWidth(left.multipliedFullWidth(by: 1_000_000)).quotient
        }
        return part(capacity.vcpus, used.vcpus) + part(capacity.memoryMB, used.memoryMB)
            + part(capacity.diskGB, used.diskGB)
    }
}

/// Fitting instance slots on hosts over a window.
///
/// Packing policy (`.packing`): classic best fit over the window's peak usage, so partly used
/// hosts fill up and empty hosts stay empty (for whole-host reservations and large requests):
/// - **Best fit:** the host left with the least (`leftoverScore`: what remains of each resource at
///   the window's busiest instant, as a fraction of the host's capacity, summed) after the
///   placement; then the smallest `slack` in time; then the host name.
/// - `same_host`: the first host in that order that holds all `count`. `different_host`: the first
///   `count` hosts that hold one each. No affinity: the best fit of the hosts that hold all that
///   remains takes it (an empty host fits worst, so it is taken only when no partly used host holds
///   the rest); if none does, the one that holds the most takes what it can, and so on.
///
/// Two variants measured worse than plain first fit on `berth-bench`'s mixed trace and were
/// dropped: ranking by idle time in the window first ("busiest first"), and filling partly used
/// hosts before an empty one even when that splits a request.

///
/// `.firstFit` takes hosts in name order: the first that holds all (`same_host`), the first `count`
/// that hold one (`different_host`), or as many as each holds in turn (no affinity).
public enum InstanceFit {
    /// The usage at the busiest instant of `window`, per dimension, by a sweep over the endpoints of
    /// the usages clipped to the window. Intervals are half-open, so an allocation ending at t and one
    /// starting at t never add up. The peaks of different dimensions may fall at different instants;
    /// since a new instance spans the whole window, each dimension's own peak is what limits it.
    public static func peakUsage(_ usages: [InstanceUsage], within window: Interval) -> InstanceSize {
        sweep(usages, within: window).peak
    }

    /// The peak usage, and the time within the window when nothing runs, in one sweep.
    static func sweep(_ usages: [InstanceUsage], within window: Interval) -> (peak: InstanceSize, idle: Int64) {
        var events: [(time: Int64, delta: InstanceSize, isEnd: Bool)] = []
        events.reserveCapacity(usages.count * 2)
        for u in usages where u.interval.overlaps(window) {
            events.append((Swift.max(u.interval.start, window.start), u.total, false))
            events.append((Swift.min(u.interval.end, window.end), u.total, true))
        }
        events.sort { a, b in a.time != b.time ? a.time < b.time : (a.isEnd && !b.isEnd) }
        var current = InstanceSize.zero
        var peak = InstanceSize.zero
        var running = 0
        var idle: Int64 = 0
        var last = window.start
        for e in events {
            if running == 0 { idle += e.time - last }
            last = e.time
            if e.isEnd {
                current = current - e.delta
                running -= 1
            } else {
                current = current + e.delta
                running += 1
                peak = peak.max(current)
            }
        }
        idle += window.end - last
        return (peak, idle)
    }

    /// How many more instances of `request` fit on a host of `capacity` at every instant of `window`.
    public static func maxAdditional(
        capacity: InstanceSize, usages: [InstanceUsage], window: Interval, request: InstanceSize
    ) -> Int {
        InstanceHostLoad(host: "", capacity: capacity, usages: usages, window: window).maxAdditional(request)
    }

    /// The most instances of `size` the hosts could hold with the affinity rule (for "could this
    /// request ever fit": pass hosts with no load).
    public static func maxPlaceable(size: InstanceSize, affinity: InstanceAffinity?, hosts: [InstanceHostLoad]) -> Int {
        let per = hosts.map { $0.maxAdditional(size) }
        switch affinity {
        case .sameHost: return per.max() ?? 0
        case .differentHost: return per.filter { $0 > 0 }.count
        case nil: return per.reduce(0) { $0 &+ $1 }
        }
    }

    /// Chooses hosts for `count` instances of `size`, or nil if they do not fit (with the affinity
    /// rule). Hosts listed twice count once (the first entry). `keep` (a reservation's current
    /// placements, on lease updates; the loads must not include them) is kept first wherever it still
    /// fits: all of it on one host for `same_host`, one per host for `different_host`. The result has
    /// one entry per host, in the order chosen.
    public static func choose(
        count: Int, size: InstanceSize, affinity: InstanceAffinity?, hosts: [InstanceHostLoad],
        policy: PlacementPolicy = .packing, keep: [InstanceSlotAssignment] = []
    ) -> [InstanceSlotAssignment]? {
        guard count > 0 else { return [] }
        var seen: Set<String> = []
        var loads = hosts.filter { seen.insert($0.host).inserted }.sorted { $0.host < $1.host }
        var out: [InstanceSlotAssignment] = []
        var taken: [String: Int] = [:]  // host -> index in out
        func take(_ i: Int, _ n: Int) {
            loads[i].add(slots: n, of: size)
            if let k = taken[loads[i].host] {
                out[k].slots += n
            } else {
                taken[loads[i].host] = out.count
                out.append(InstanceSlotAssignment(host: loads[i].host, slots: n))
            }
        }
        let index = Dictionary(uniqueKeysWithValues: loads.enumerated().map { ($1.host, $0) })
        var remaining = count

        // Current placements first.
        switch affinity {
        case .sameHost:
            if let k = keep.first, let i = index[k.host], loads[i].maxAdditional(size) >= count {
                take(i, count)
                return out
            }
        case .differentHost:
            for k in keep where remaining > 0 && taken[k.host] == nil {
                if let i = index[k.host], loads[i].maxAdditional(size) >= 1 {
                    take(i, 1)
                    remaining -= 1
                }
            }
        case nil:
            for k in keep where remaining > 0 {
                if let i = index[k.host] {
                    let n = Swift.min(remaining, k.slots, loads[i].maxAdditional(size))
                    if n > 0 {
                        take(i, n)
                        remaining -= n
                    }
                }
            }
        }
        guard remaining > 0 else { return out }

        /// Packing order for placing `n` on host i: tightest fit, slack, name.
        func better(_ a: Int, _ b: Int, placing na: Int, _ nb: Int) -> Bool {
            let la = loads[a].leftoverScore(after: na, of: size)
            let lb = loads[b].leftoverScore(after: nb, of: size)
            if la != lb { return la < lb }
            if loads[a].slack != loads[b].slack { return loads[a].slack < loads[b].slack }
            return loads[a].host < loads[b].host
        }

        switch (affinity, policy) {
        case (.sameHost, .packing):
            let fits = loads.indices.filter { loads[$0].maxAdditional(size) >= count }
            guard let best = fits.min(by: { better($0, $1, placing: count, count) }) else { return nil }
            take(best, count)
        case (.sameHost, .firstFit):
            guard let first = loads.indices.first(where: { loads[$0].maxAdditional(size) >= count }) else { return nil }
            take(first, count)
        case (.differentHost, _):
            var fits = loads.indices.filter { taken[loads[$0].host] == nil && loads[$0].maxAdditional(size) >= 1 }
            if policy == .packing { fits.sort { better($0, $1, placing: 1, 1) } }
            guard fits.count >= remaining else { return nil }
            for i in fits.prefix(remaining) { take(i, 1) }
        case (nil, .firstFit):
            for i in loads.indices where remaining > 0 {
                let n = Swift.min(remaining, loads[i].maxAdditional(size))
                if n > 0 {
                    take(i, n)
                    remaining -= n
                }
            }
            guard remaining == 0 else { return nil }
        case (nil, .packing):
            while remaining > 0 {
                let open = loads.indices.filter { loads[$0].maxAdditional(size) >= 1 }
                guard !open.isEmpty else { return nil }
                // Whole first: the tightest host that holds all that remains takes it, rather than
                // splitting the request over partly used hosts (splitting measured worse).
                let tier = open
                let whole = tier.filter { loads[$0].maxAdditional(size) >= remaining }
                if let best = whole.min(by: { better($0, $1, placing: remaining, remaining) }) {
                    take(best, remaining)
                    remaining = 0
                } else {
                    // Nobody holds all: the host that holds the most takes what it can.
                    let most = tier.min { a, b in
                        let ma = loads[a].maxAdditional(size)
                        let mb = loads[b].maxAdditional(size)
                        return ma != mb ? ma > mb : better(a, b, placing: ma, mb)
                    }!
                    let n = loads[most].maxAdditional(size)
                    take(most, n)
                    remaining -= n
                }
            }
        }
        return out
    }
}
