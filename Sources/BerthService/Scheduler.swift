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
/// Every command runs to completion inside the actor (no suspension between check and apply),
/// so two requests can never both see the same capacity free. A command plans against memory,
/// hands its change to the group commit (`GroupCommit`) and applies it to memory; the actor then
/// serves the next request while the change is written, and changes that arrive during one fsync
/// share the next. No reply leaves before what it reports (or read) is on disk: `call` waits for
/// its ticket outside the actor. Events are published only once committed. If a commit fails,
/// every request of its batch and those planned after it fail with `unavailable`, and memory is
/// rebuilt from the store before the next command: memory never goes on holding what the disk
/// does not.
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
    /// Writes changes in groups; see `GroupCommit`.
    nonisolated let commits: GroupCommit

    /// Why the last write failed, while writes are failing (nil when storage is healthy).
    public nonisolated var storageFault: BerthError? { commits.storageFault }

    /// Commits the store refused since start.
    public nonisolated var failedCommits: Int { commits.failedCommits }
    /// The ticket of the last change applied to memory: a reply produced now waits for it.
    var memoryTicket: GroupCommit.Ticket = 0
    /// Idempotency records whose change may not be on disk yet (a retry must find them before
    /// the store does); pruned once durable, cleared on restore.
    var pendingIdempotency: [String: (params: String, result: JSON, ticket: GroupCommit.Ticket)] = [:]
    /// The ledger no longer matched a committed change (a bug): rebuild memory once the commits drain.
    var restoreWhenDrained = false
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
        commits = GroupCommit(store: store, logger: logger) { batch in
            var actions = false
            for m in batch {
                broadcaster.publish(m.events)
                if !m.actions.isEmpty { actions = true }
            }
            if actions { actionsEnqueued() }
        }
        let model = try Model(try store.loadSnapshot(), enforceCredits: policy.enforceCredits, clock: clock)
        ledger = model.ledger
        hosts = model.hosts
        sortedHosts = model.sortedHosts
        leases = model.leases
        leaseOrder = model.leaseOrder
        calendar = model.calendar
        timers = model.timers
        lastEventSeq = model.lastEventSeq
        preemptibles = model.preemptibles
        preemptibleOrder = model.preemptibleOrder
        livePreemptibles = model.livePreemptibles
        inventory = HostInventory(hosts: sortedHosts, calendar: &calendar)
    }

    /// Everything the actor holds in memory, as rebuilt from the store (at start, and after a
    /// failed commit).
    struct Model {
        var hosts: [String: Host] = [:]
        var sortedHosts: [Host] = []
        var leases: [String: Lease] = [:]
        var leaseOrder: [(Timestamp, String)] = []
        var calendar = LeaseCalendar()
        var timers = Heap<LeaseTimer>()
        var lastEventSeq: Int64 = 0
        var ledger: CreditLedger
        var preemptibles: [String: Preemptible] = [:]
        var preemptibleOrder: [(Timestamp, String)] = []
        var livePreemptibles: [String: Set<String>] = [:]

        /// A manual clock is also set back to the time last stored.
        init(_ snap: BerthStore.Snapshot, enforceCredits: Bool, clock: BerthClock) throws(BerthError) {
            // The calendar on one core, everything else on the other: the two read the snapshot only.
            let (calendar, restored) = Parallel.both(
                { Scheduler.calendar(leases: snap.leases, preemptibles: snap.preemptibles) },
                { Restored(snap, enforceCredits: enforceCredits) })
            ledger = try restored.ledger.get()
            hosts = restored.hosts
            sortedHosts = restored.sortedHosts
            leases = restored.leases
            leaseOrder = restored.leaseOrder
            timers = restored.timers
            preemptibles = restored.preemptibles
            preemptibleOrder = restored.preemptibleOrder
            livePreemptibles = restored.livePreemptibles
            self.calendar = calendar
            lastEventSeq = snap.lastEventSeq
            if clock.mode == .manual, let saved = snap.meta["manual_clock"].flatMap(Int64.init) {
                clock.set(Timestamp(seconds: saved))
            }
        }
    }

    /// Before any command: after a failed commit, rebuild memory from the store (what is on disk is
    /// the truth; the failed changes were answered `unavailable`). Throws `unavailable` while the
    /// store cannot be read, so nothing is served from memory that may be wrong.
    func ensureRestored() throws(BerthError) {
        let failed = commits.needsRestore
        guard failed || (restoreWhenDrained && commits.isDrained) else { return }
        let model: Model
        do throws(BerthError) {
            model = try Model(try store.loadSnapshot(), enforceCredits: policy.enforceCredits, clock: clock)
        } catch {
            logger.error("cannot restore state from the store", metadata: ["error": "\(error.message)"])
            throw BerthError(.unavailable, "storage failed and berthd cannot reload its state yet (\(error.message)); retry")
        }
        ledger = model.ledger
        hosts = model.hosts
        sortedHosts = model.sortedHosts
        leases = model.leases
        leaseOrder = model.leaseOrder
        calendar = model.calendar
        timers = model.timers
        lastEventSeq = model.lastEventSeq
        preemptibles = model.preemptibles
        preemptibleOrder = model.preemptibleOrder
        livePreemptibles = model.livePreemptibles
        inventory = HostInventory(hosts: sortedHosts, calendar: &calendar)
        pendingIdempotency = [:]
        restoreWhenDrained = false
        if failed {
            memoryTicket = commits.restored()
        }
        logger.notice("state restored from the store", metadata: ["leases": "\(leases.count)", "hosts": "\(hosts.count)"])
    }

    /// The calendar of a snapshot: every lease's allocations (in the snapshot's order), then every
    /// preemptible's, as the scheduler would have added them one by one.
    static func calendar(leases: [Lease], preemptibles: [Preemptible]) -> LeaseCalendar {
        LeaseCalendar(sortedEntriesByHost: CalendarBulkLoad.entriesByHost(leases: leases, preemptibles: preemptibles))
    }

    /// Everything but the calendar, rebuilt from a snapshot.
    struct Restored: Sendable {
        var ledger: Result<CreditLedger, BerthError>
        var hosts: [String: Host] = [:]
        var sortedHosts: [Host]
        var leases: [String: Lease] = [:]
        var leaseOrder: [(Timestamp, String)] = []
        var timers: Heap<LeaseTimer>
        var preemptibles: [String: Preemptible] = [:]
        var preemptibleOrder: [(Timestamp, String)] = []
        var livePreemptibles: [String: Set<String>] = [:]

        init(_ snap: BerthStore.Snapshot, enforceCredits: Bool) {
            ledger = Result { () throws(BerthError) -> CreditLedger in try CreditLedger(entries: snap.ledger, enforce: enforceCredits) }
            hosts.reserveCapacity(snap.hosts.count)
            for h in snap.hosts { hosts[h.name] = h }
            sortedHosts = snap.hosts.sorted { $0.name < $1.name }
            leases.reserveCapacity(snap.leases.count)
            leaseOrder.reserveCapacity(snap.leases.count)
            var due: [LeaseTimer] = []
            due.reserveCapacity(2 * snap.leases.count)
            for l in snap.leases {
                leases[l.id] = l
                leaseOrder.append((l.createdAt, l.id))
                due.append(contentsOf: Scheduler.timers(for: l))
            }
            leaseOrder.sort { $0 < $1 }
            for p in snap.preemptibles {
                preemptibles[p.id] = p
                preemptibleOrder.append((p.createdAt, p.id))
                if p.status.isLive { livePreemptibles[p.host, default: []].insert(p.id) }
                if p.status == .preempting, let at = p.preemptAt { due.append(LeaseTimer(at: at, kind: .preempt, leaseID: p.id)) }
            }
            // One O(n) heapify instead of n inserts.
            timers = Heap(due)
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
        /// The result recorded with `mutation.idempotency`, for a retry that comes before it is on disk.
        var idempotencyResult: JSON?
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

    /// Hands a change to the group commit and applies it to memory; its events are published once
    /// it is on disk, and the reply of the request waits for that (`call`).
    func apply(_ c: Change) throws(BerthError) {
        var m = c.mutation
        m.leases = c.leaseUpdates
        m.ledger = c.ledgerEntries
        m.preemptibles = c.preemptibleUpdates
        if clock.mode == .manual { m.meta["manual_clock"] = String(clock.now().seconds) }
        let ticket = try commits.enqueue(m)
        memoryTicket = ticket
        if let r = m.idempotency, let result = c.idempotencyResult {
            pendingIdempotency[r.method + "\u{0}" + r.key] = (r.params, result, ticket)
            if pendingIdempotency.count > 256 { prunePendingIdempotency() }
        }
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
            // The entries will be on disk; a plan that no longer applies is a bug: rebuild memory
            // from the store once what is being written has landed.
            logger.critical("ledger out of step with the store; rebuilding", metadata: ["error": "\(error)"])
            restoreWhenDrained = true
        }
        lastEventSeq += Int64(m.events.count)
    }

    /// Drops the pending idempotency records that are on disk by now (the store answers for them).
    func prunePendingIdempotency() {
        let settled = pendingIdempotency.values.map(\.ticket).filter { commits.isSettled($0) }
        guard !settled.isEmpty else { return }
        let durable = Set(settled)
        pendingIdempotency = pendingIdempotency.filter { !durable.contains($0.value.ticket) }
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

    /// Fires every timer due at or before `now` and returns once the transitions are on disk.
    public nonisolated func processDue() async {
        let ticket = await fireDueTimers()
        do throws(BerthError) {
            try await commits.waitDurable(ticket)
        } catch {
            logger.error("lifecycle transitions could not be stored", metadata: ["error": "\(error.message)"])
        }
    }

    /// Fires every timer due at or before `now`, in time order, one change per transition; returns
    /// the ticket to wait for.
    func fireDueTimers() -> GroupCommit.Ticket {
        do throws(BerthError) {
            try ensureRestored()
        } catch {
            return memoryTicket
        }
        fireDue()
        return memoryTicket
    }

    /// Fires every timer due at or before `now`, in time order, one change per transition.
    func fireDue() {
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

    /// The latest time a manual clock may show: the scheduler looks at `[now, distantFuture)`
    /// (calendar queries, host updates), which must not be empty.
    static let latestManualTime = Timestamp.distantFuture - 1

    /// Moves a manual clock and processes everything due up to the new time. `param` names the
    /// parameter that asked for `t`, for the error when `t` is out of range.
    func setClock(_ t: Timestamp, param: String) throws(BerthError) -> Timestamp {
        guard clock.mode == .manual else { throw BerthError(.conflict, "the clock is not manual") }
        if t > Scheduler.latestManualTime {
            throw .invalidParam(param, "the clock cannot go past \(Scheduler.latestManualTime.rfc3339)")
        }
        let current = clock.now()
        if t < current {
            throw BerthError(.conflict, "the clock cannot move backwards (now \(current), asked for \(t))")
        }
        // The clock moves before its change is enqueued: refuse first if nothing can be stored.
        // (A commit failing meanwhile makes the next command restore memory, clock included.)
        try commits.checkWritable()
        clock.set(t)
        fireDue()
        // `apply` records the manual clock with every change; this one records only the time.
        try apply(Change())
        return clock.now()
    }
}
