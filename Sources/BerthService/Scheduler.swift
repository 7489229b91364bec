import BerthCore
import BerthJSON
import BerthStore
import HeapModule
import Logging

/// Settings the scheduler enforces (from the daemon's config file).
public struct SchedulerPolicy: Sendable {
    /// Longest lease allowed (`policy_violation`, rule `max_lease_duration`); nil for no limit.
    public var maxLeaseDuration: Int64?
    /// How far ahead `earliest_start` and `availability.find` look by default.
    public var searchHorizon: Int64
    /// How far in the past a `start` may be and still be taken as "now" (client clock skew).
    public var startGrace: Int64

    /// Refuse leases the project's credits cannot pay for (-32003); off: costs are only recorded.
    public var enforceCredits: Bool
    /// Preemptible lifetimes, notice and what preemption does.
    public var preemption: PreemptionPolicy

    public init(
        maxLeaseDuration: Int64? = nil, searchHorizon: Int64 = 366 * 86_400, startGrace: Int64 = 60,
        enforceCredits: Bool = false, preemption: PreemptionPolicy = PreemptionPolicy()
    ) {
        self.enforceCredits = enforceCredits
        self.preemption = preemption
        self.maxLeaseDuration = maxLeaseDuration
        self.searchHorizon = searchHorizon
        self.startGrace = startGrace
    }
}

/// Settings for preemptible instances (config section `preemption`).
public struct PreemptionPolicy: Sendable {
    /// Guaranteed lifetime when a request names none.
    public var defaultMinLifetime: Int64
    /// Longest guaranteed lifetime a request may ask for (`policy_violation`, rule `max_min_lifetime`).
    public var maxMinLifetime: Int64
    /// How long before a reservation needs the capacity its preemptibles are preempted.
    public var notice: Int64
    /// What the adapter does to a preempted server.
    public var action: PreemptAction

    public enum PreemptAction: String, Sendable, CaseIterable { case delete, shelve }

    public init(defaultMinLifetime: Int64 = 3600, maxMinLifetime: Int64 = 7 * 86_400, notice: Int64 = 600, action: PreemptAction = .delete) {
        self.defaultMinLifetime = defaultMinLifetime
        self.maxMinLifetime = maxMinLifetime
        self.notice = notice
        self.action = action
    }
}

/// One lifecycle moment of one lease (or one preemptible's preemption), due at `at`.
struct LeaseTimer: Comparable {
    /// At the same instant: ends free capacity first, and preemptions happen before starts.
    enum Kind: Int { case end = 0, preempt = 1, beforeEnd = 2, start = 3 }
    var at: Timestamp
    var kind: Kind
    /// A lease id, or a preemptible id for `.preempt`.
    var leaseID: String

    static func < (a: LeaseTimer, b: LeaseTimer) -> Bool {
        (a.at, a.kind.rawValue, a.leaseID) < (b.at, b.kind.rawValue, b.leaseID)
    }
}

/// The single owner of Berth's mutable state: hosts, leases, the calendar and the timer queue.
///
/// Every command runs to completion inside the actor (no suspension between check and commit),
/// so two requests can never both see the same capacity free. A command first plans against
/// memory, then commits to SQLite, and only then applies to memory and publishes events: memory
/// never holds what the disk does not.
public actor Scheduler {
    let store: BerthStore
    public nonisolated let clock: BerthClock
    let policy: SchedulerPolicy
    /// GPU models and their MIG geometry (built in, plus the operator's additions).
    let models: GPUModelTable
    let broadcaster: EventBroadcaster
    let logger: Logger
    /// Called after a commit that enqueued actions, to wake the delivery worker.
    let actionsEnqueued: @Sendable () -> Void

    var hosts: [String: Host] = [:]
    var sortedHosts: [Host] = [] {
        didSet { inventory = HostInventory(hosts: sortedHosts, calendar: &calendar) }
    }
    /// `sortedHosts` numbered in `calendar`, rebuilt when the hosts change, so planning costs
    /// nothing per host that the search does not touch.
    var inventory: HostInventory
    var leases: [String: Lease] = [:]
    /// Leases in listing order (created_at, id), for stable cursors.
    var leaseOrder: [(Timestamp, String)] = []
    var calendar = LeaseCalendar()
    var timers = Heap<LeaseTimer>()
    var lastEventSeq: Int64 = 0
    /// Credit grants, charges and refunds (pure; rebuilt from the store's entries at start).
    var ledger: CreditLedger
    var preemptibles: [String: Preemptible] = [:]
    /// Preemptibles in listing order (created_at, id).
    var preemptibleOrder: [(Timestamp, String)] = []
    /// Ids of the preemptibles still holding capacity, per host.
    var livePreemptibles: [String: Set<String>] = [:]
    /// Whether a preemption hook is configured (hook runs are queued only then); follows reloads.
    var hookConfigured = false
    /// Reserved vs used unit-seconds (metrics; see Scheduler+Metrics.swift).
    var usageAccrual = UsageAccrual()
    var usageSource: UsageSource? = nil

    public init(
        store: BerthStore, clock: BerthClock, policy: SchedulerPolicy = SchedulerPolicy(),
        models: GPUModelTable = .builtIn, broadcaster: EventBroadcaster = EventBroadcaster(), logger: Logger,
        actionsEnqueued: @escaping @Sendable () -> Void = {}
    ) throws(BerthError) {
        self.store = store
        self.clock = clock
        self.policy = policy
        self.models = models
        self.broadcaster = broadcaster
        self.logger = logger
        self.actionsEnqueued = actionsEnqueued
        let snap = try store.loadSnapshot()
        ledger = try CreditLedger(entries: snap.ledger, enforce: policy.enforceCredits)
        for h in snap.hosts { hosts[h.name] = h }
        sortedHosts = snap.hosts.sorted { $0.name < $1.name }
        inventory = HostInventory(hosts: sortedHosts, calendar: &calendar)
        for l in snap.leases {
            leases[l.id] = l
            leaseOrder.append((l.createdAt, l.id))
            calendar.add(l)
            for t in Scheduler.timers(for: l) { timers.insert(t) }
        }
        leaseOrder.sort { $0 < $1 }
        for p in snap.preemptibles {
            preemptibles[p.id] = p
            preemptibleOrder.append((p.createdAt, p.id))
            calendar.add(p)
            if p.status.isLive { livePreemptibles[p.host, default: []].insert(p.id) }
            if p.status == .preempting, let at = p.preemptAt { timers.insert(LeaseTimer(at: at, kind: .preempt, leaseID: p.id)) }
        }
        lastEventSeq = snap.lastEventSeq
        if clock.mode == .manual, let saved = snap.meta["manual_clock"].flatMap(Int64.init) {
            clock.set(Timestamp(seconds: saved))
        }
    }

    public var now: Timestamp { clock.now() }

    public var leaseCount: Int { leases.count }
    public var hostCount: Int { hosts.count }

    /// The timers a lease still owes, given its state.
    static func timers(for l: Lease) -> [LeaseTimer] {
        switch l.status {
        case .pending:
            var out = [LeaseTimer(at: l.start, kind: .start, leaseID: l.id), LeaseTimer(at: l.end, kind: .end, leaseID: l.id)]
            if let b = l.beforeEndAt { out.append(LeaseTimer(at: b, kind: .beforeEnd, leaseID: l.id)) }
            return out
        case .active:
            var out = [LeaseTimer(at: l.end, kind: .end, leaseID: l.id)]
            if let b = l.beforeEndAt, !l.beforeEndFired { out.append(LeaseTimer(at: b, kind: .beforeEnd, leaseID: l.id)) }
            return out
        default:
            return []
        }
    }

    // MARK: - Committing

    /// Builds one transaction's worth of change; event sequence numbers are assigned here, in memory,
    /// because the actor is the only writer.
    struct Change {
        var mutation = BerthStore.Mutation()
        var leaseUpdates: [Lease] = []
        var removedFromCalendar: [Lease] = []
        var addedToCalendar: [Lease] = []
        /// Planned against `ledger` in this same actor turn; applied after the commit.
        var ledgerEntries: [LedgerEntry] = []
        /// New versions of preemptibles (their calendar entries are replaced on apply).
        var preemptibleUpdates: [Preemptible] = []
    }

    func event(
        _ type: String, at: Timestamp, lease: Lease? = nil, host: String? = nil, preemptible: Preemptible? = nil,
        data: [String: JSON] = [:], into c: inout Change
    ) {
        var e = LifecycleEvent(
            type: type, at: at, leaseID: lease?.id, projectID: lease?.projectID ?? preemptible?.projectID,
            host: host ?? preemptible?.host, preemptibleID: preemptible?.id, data: data)
        e.seq = lastEventSeq + Int64(c.mutation.events.count) + 1
        c.mutation.events.append(e)
    }

    /// What a lease holds, as a sorted list (one entry per allocation, with its reservation), for
    /// comparing placements regardless of order.
    static func placement(_ lease: Lease) -> [String] {
        lease.reservations.flatMap { r in r.allocations.map { "\(r.id) \($0.json.serialized())" } }.sorted()
    }

    func action(_ kind: String, lease: Lease, at: Timestamp, into c: inout Change) {
        // Each host once (a host may hold several GPU slices or slot allocations of one lease).
        var seen: Set<String> = []
        let hostsHeld = lease.reservations.flatMap { $0.allocations.map(\.host) }.filter { seen.insert($0).inserted }
        // Every allocation with its reservation and kind: the adapter needs the GPU slices
        // (gpu, profile, slot) and instance slots, not just the hosts.
        let allocations: [JSON] = lease.reservations.flatMap { r in
            r.allocations.map { a -> JSON in
                guard case .object(var o) = a.json else { return a.json }
                o["reservation_id"] = .string(r.id)
                o["kind"] = .string(r.request.kind.rawValue)
                return .object(o)
            }
        }
        let a = OutboxAction(
            id: UUIDString.random(), kind: kind, target: "lease/\(lease.id)", leaseID: lease.id, createdAt: at,
            payload: [
                "lease_id": .string(lease.id), "project_id": .string(lease.projectID), "name": .string(lease.name),
                "hosts": .array(hostsHeld.map { .string($0) }), "start": .string(lease.start.rfc3339),
                "end": .string(lease.end.rfc3339), "allocations": .array(allocations),
                // What each reservation asked for (the adapter sizes private flavors from it).
                "reservations": .array(lease.reservations.map { r in
                    var o: [String: JSON] = ["id": .string(r.id), "kind": .string(r.request.kind.rawValue)]
                    if let v = r.request.vcpus { o["vcpus"] = .int(v) }
                    if let v = r.request.memoryMB { o["memory_mb"] = .int(v) }
                    if let v = r.request.diskGB { o["disk_gb"] = .int(v) }
                    if let v = r.request.profile { o["profile"] = .string(v) }
                    if let v = r.request.gpuProfile { o["gpu_profile"] = .string(v) }
                    return .object(o)
                }),
            ])
        c.mutation.actions.append(a)
    }

    /// Commits a change, then applies it to memory and publishes its events.
    func apply(_ c: Change) throws(BerthError) {
        var m = c.mutation
        m.leases = c.leaseUpdates
        m.ledger = c.ledgerEntries
        m.preemptibles = c.preemptibleUpdates
        if clock.mode == .manual { m.meta["manual_clock"] = String(clock.now().seconds) }
        try store.commit(m)
        for l in c.removedFromCalendar { calendar.remove(l) }
        for l in c.leaseUpdates {
            if leases[l.id] == nil { insertOrdered(l) }
            leases[l.id] = l
        }
        for l in c.addedToCalendar { calendar.add(l) }
        for p in c.preemptibleUpdates { applyPreemptible(p) }
        do {
            try ledger.apply(c.ledgerEntries)
        } catch {
            // The entries are on disk; a plan that no longer applies is a bug: rebuild from the store.
            logger.critical("ledger out of step with the store; rebuilding", metadata: ["error": "\(error)"])
            if let snap = try? store.loadSnapshot(), let rebuilt = try? CreditLedger(entries: snap.ledger, enforce: ledger.enforce) {
                ledger = rebuilt
            }
        }
        lastEventSeq += Int64(m.events.count)
        broadcaster.publish(m.events)
        if !m.actions.isEmpty { actionsEnqueued() }
    }

    /// Replaces a preemptible in memory: calendar entries, live set, listing order, timer.
    private func applyPreemptible(_ p: Preemptible) {
        if let old = preemptibles[p.id] {
            calendar.remove(old)
        } else {
            let key = (p.createdAt, p.id)
            preemptibleOrder.insert(key, at: CreationCursor.index(after: key, in: preemptibleOrder))
        }
        preemptibles[p.id] = p
        calendar.add(p)
        if p.status.isLive {
            livePreemptibles[p.host, default: []].insert(p.id)
        } else {
            livePreemptibles[p.host]?.remove(p.id)
            if livePreemptibles[p.host]?.isEmpty == true { livePreemptibles[p.host] = nil }
        }
        if p.status == .preempting, let at = p.preemptAt { timers.insert(LeaseTimer(at: at, kind: .preempt, leaseID: p.id)) }
    }

    private func insertOrdered(_ l: Lease) {
        let key = (l.createdAt, l.id)
        var lo = 0, hi = leaseOrder.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if leaseOrder[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        leaseOrder.insert(key, at: lo)
    }

    // MARK: - Time

    /// Fires every timer due at or before `now`, in time order, one transaction per transition.
    public func processDue() {
        let now = clock.now()
        while let t = timers.min, t.at <= now {
            _ = timers.removeMin()
            accrueUsage(upTo: t.at)
            do {
                try fire(t)
            } catch {
                // Storage refused the transition: put it back and retry on the next tick.
                timers.insert(t)
                logger.error("lifecycle transition failed", metadata: ["lease.id": "\(t.leaseID)", "error": "\(error)"])
                return
            }
        }
        accrueUsage(upTo: now)
    }

    /// The next instant a timer is due (the system-clock ticker sleeps until then).
    public func nextDue() -> Timestamp? { timers.min?.at }

    /// Timers are never removed eagerly; a popped timer that no longer matches its lease is ignored.
    func fire(_ t: LeaseTimer) throws(BerthError) {
        if t.kind == .preempt { return try firePreemption(t) }
        guard var l = leases[t.leaseID] else { return }
        var c = Change()
        switch t.kind {
        case .preempt:
            return
        case .start:
            guard l.status == .pending, l.start == t.at else { return }
            l.status = .active
            for i in l.reservations.indices where l.reservations[i].status == .pending { l.reservations[i].status = .active }
            l.updatedAt = t.at
            event("lease.started", at: t.at, lease: l, into: &c)
            action("lease.start", lease: l, at: t.at, into: &c)
        case .beforeEnd:
            guard l.status == .active || l.status == .pending, !l.beforeEndFired, l.beforeEndAt == t.at else { return }
            if l.status == .pending { return }  // the start timer has not fired yet; it re-arms this one
            l.beforeEndFired = true
            l.updatedAt = t.at
            event("lease.before_end", at: t.at, lease: l, data: ["end": .string(l.end.rfc3339)], into: &c)
        case .end:
            guard l.status == .active || l.status == .pending, l.end == t.at else { return }
            let wasActive = l.status == .active
            l.status = .ended
            for i in l.reservations.indices { l.reservations[i].status = .ended }
            l.updatedAt = t.at
            event("lease.ended", at: t.at, lease: l, into: &c)
            if wasActive { action("lease.end", lease: l, at: t.at, into: &c) }
        }
        c.leaseUpdates = [l]
        try apply(c)
    }

    func scheduleTimers(for l: Lease) {
        for t in Scheduler.timers(for: l) { timers.insert(t) }
    }

    /// Moves a manual clock and processes everything due up to the new time before returning.
    public func setClock(_ t: Timestamp) throws(BerthError) -> Timestamp {
        guard clock.mode == .manual else { throw BerthError(.conflict, "the clock is not manual") }
        let current = clock.now()
        if t < current {
            throw BerthError(.conflict, "the clock cannot move backwards (now \(current), asked for \(t))")
        }
        clock.set(t)
        processDue()
        var m = BerthStore.Mutation()
        m.meta["manual_clock"] = String(t.seconds)
        try store.commit(m)
        return clock.now()
    }
}
