import BerthCore
import BerthJSON
import BerthStore
import Logging

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

    /// Hosts, leases, calendar, timers, ledger, preemptibles: everything rebuilt from the store,
    /// replaced whole on restore. Handlers mutate it in place (`state.setLease(l)`), never
    /// through a local copy, which would copy its tables.
    var state: SchedulerState
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
    /// Where capacity in use comes from (nil: the adapter does not report it).
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
        state = try Scheduler.restoredState(store: store, policy: policy, clock: clock, usage: UsageAccrual())
    }

    /// The state the store holds. A manual clock is also set back to the time last stored.
    static func restoredState(store: BerthStore, policy: SchedulerPolicy, clock: BerthClock, usage: UsageAccrual)
        throws(BerthError) -> SchedulerState
    {
        let snap = try store.loadSnapshot()
        let state = try SchedulerState(snapshot: snap, enforceCredits: policy.enforceCredits, usage: usage)
        if clock.mode == .manual, let saved = snap.meta["manual_clock"].flatMap(Int64.init) {
            clock.set(Timestamp(seconds: saved))
        }
        return state
    }

    /// Before any command: after a failed commit, rebuild memory from the store (what is on disk is
    /// the truth; the failed changes were answered `unavailable`). Throws `unavailable` while the
    /// store cannot be read, so nothing is served from memory that may be wrong.
    func ensureRestored() throws(BerthError) {
        let failed = commits.needsRestore
        guard failed || (restoreWhenDrained && commits.isDrained) else { return }
        do throws(BerthError) {
            state = try Scheduler.restoredState(store: store, policy: policy, clock: clock, usage: state.usage)
        } catch {
            logger.error("cannot restore state from the store", metadata: ["error": "\(error.message)"])
            throw BerthError(
                .unavailable, "storage failed and berthd cannot reload its state yet (\(error.message)); retry")
        }
        pendingIdempotency = [:]
        restoreWhenDrained = false
        if failed {
            memoryTicket = commits.restored()
        }
        logger.notice(
            "state restored from the store",
            metadata: ["leases": "\(state.leases.count)", "hosts": "\(state.hosts.count)"])
    }

    public var now: Timestamp { clock.now() }

    public var leaseCount: Int { state.leases.count }
    public var hostCount: Int { state.hosts.count }
    /// Read-only views for tests and tools that inspect the scheduler (handlers use `state`).
    var leases: [String: Lease] { state.leases }
    var hosts: [String: Host] { state.hosts }

    // MARK: - Committing

    /// Builds one transaction's worth of change; event sequence numbers are assigned here, in memory,
    /// because the actor is the only writer.
    struct Change {
        var mutation = BerthStore.Mutation()
        var leaseUpdates: [Lease] = []
        var removedFromCalendar: [Lease] = []
        var addedToCalendar: [Lease] = []
        /// Planned against `state.ledger` in this same actor turn; applied after the commit.
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
        e.seq = state.lastEventSeq + Int64(c.mutation.events.count) + 1
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
                "reservations": .array(
                    lease.reservations.map { r in
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
        for l in c.removedFromCalendar { state.calendar.remove(l) }
        for l in c.leaseUpdates { state.setLease(l) }
        for l in c.addedToCalendar { state.calendar.add(l) }
        for p in c.preemptibleUpdates { state.setPreemptible(p) }
        do {
            try state.ledger.apply(c.ledgerEntries)
        } catch {
            // The entries will be on disk; a plan that no longer applies is a bug: rebuild memory
            // from the store once what is being written has landed.
            logger.critical("ledger out of step with the store; rebuilding", metadata: ["error": "\(error)"])
            restoreWhenDrained = true
        }
        state.lastEventSeq += Int64(m.events.count)
    }

    /// Drops the pending idempotency records that are on disk by now (the store answers for them).
    func prunePendingIdempotency() {
        let settled = pendingIdempotency.values.map(\.ticket).filter { commits.isSettled($0) }
        guard !settled.isEmpty else { return }
        let durable = Set(settled)
        pendingIdempotency = pendingIdempotency.filter { !durable.contains($0.value.ticket) }
    }
}
