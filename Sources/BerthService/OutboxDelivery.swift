import BerthCore
import BerthJSON
import BerthStore
import Logging

/// Delivers outbox actions to the cloud adapter, at least once, in enqueue order.
///
/// Status changes go through the scheduler actor (the single writer). An action found `running`
/// at start was interrupted by a crash and is simply tried again: adapters are idempotent.
public struct OutboxDelivery: Sendable {
    public struct Retry: Sendable {
        public var baseDelay: Int64 = 2
        public var maxDelay: Int64 = 300
        public var maxAttempts: Int64 = 10
        public init() {}
    }

    let store: BerthStore
    let scheduler: Scheduler
    let adapter: any CloudAdapter
    let wakeup: Wakeup
    let retry: Retry
    let logger: Logger
    /// Which actions this worker takes: hook runs only (true), all but hook runs (false), or all (nil).
    let hooks: Bool?

    public init(
        store: BerthStore, scheduler: Scheduler, adapter: any CloudAdapter, wakeup: Wakeup, retry: Retry = Retry(),
        hooks: Bool? = nil, logger: Logger
    ) {
        self.hooks = hooks
        self.store = store
        self.scheduler = scheduler
        self.adapter = adapter
        self.wakeup = wakeup
        self.retry = retry
        self.logger = logger
    }

    /// Runs until cancelled.
    public func run() async {
        while !Task.isCancelled {
            await deliverDue()
            await wakeup.wait(timeout: .seconds(1))
        }
    }

    /// Delivers everything due now; returns how many actions were attempted.
    @discardableResult
    public func deliverDue() async -> Int {
        var attempted = 0
        while !Task.isCancelled {
            let batch: [OutboxAction]
            do {
                batch = try store.deliverableActions(now: scheduler.clock.now(), limit: 64, hooks: hooks)
            } catch {
                logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
                return attempted
            }
            if batch.isEmpty { return attempted }
            for var a in batch {
                attempted += 1
                a.status = .running
                a.attempts += 1
                a.updatedAt = scheduler.clock.now()
                guard (try? await scheduler.recordDelivery(a, failed: false)) != nil else { return attempted }
                do {
                    try await adapter.perform(a)
                    a.status = .done
                    a.lastError = nil
                    a.updatedAt = scheduler.clock.now()
                    _ = try? await scheduler.recordDelivery(a, failed: false)
                } catch {
                    let now = scheduler.clock.now()
                    a.lastError = "\(error)"
                    a.updatedAt = now
                    if a.attempts >= retry.maxAttempts || (error as? any RetryAfterHinting)?.isPermanent == true {
                        a.status = .failed
                        logger.error("action failed for good", metadata: ["action.id": "\(a.id)", "error": "\(error)"])
                        _ = try? await scheduler.recordDelivery(a, failed: true)
                    } else {
                        a.status = .pending
                        let delay = min(retry.maxDelay, retry.baseDelay << min(a.attempts - 1, 20))
                        // Exponential backoff with jitter, but never sooner than the server asked.
                        var wait = Int64.random(in: (delay / 2)...max(delay / 2, delay))
                        if let hint = (error as? any RetryAfterHinting)?.retryAfterSeconds { wait = max(wait, hint) }
                        a.dueAt = now + wait
                        logger.warning(
                            "action failed; will retry", metadata: ["action.id": "\(a.id)", "error": "\(error)"])
                        _ = try? await scheduler.recordDelivery(a, failed: false)
                    }
                }
            }
        }
        return attempted
    }
}

extension Scheduler {
    /// Stores an action's delivery state; a final failure also emits `action.failed` and marks
    /// the lease degraded, so nothing owed to the cloud disappears silently.
    /// Returns once that state is on disk.
    public nonisolated func recordDelivery(_ a: OutboxAction, failed: Bool) async throws(BerthError) {
        let (result, ticket) = await recordDeliveryInMemory(a, failed: failed)
        try await commits.waitDurable(ticket)
        try result.get()
    }

    func recordDeliveryInMemory(_ a: OutboxAction, failed: Bool) -> (Result<Void, BerthError>, GroupCommit.Ticket) {
        do throws(BerthError) {
            try ensureRestored()
            try recordDeliveryChange(a, failed: failed)
            return (.success(()), memoryTicket)
        } catch {
            return (.failure(error), memoryTicket)
        }
    }

    func recordDeliveryChange(_ a: OutboxAction, failed: Bool) throws(BerthError) {
        var c = Change()
        c.mutation.actions = [a]
        if failed {
            var l = a.leaseID.flatMap { state.leases[$0] }
            if var lease = l {
                lease.degraded = true
                lease.degradedReason = "action \(a.kind) failed: \(a.lastError ?? "unknown error")"
                lease.updatedAt = clock.now()
                c.leaseUpdates = [lease]
                l = lease
            }
            var e = LifecycleEvent(
                type: "action.failed", at: clock.now(), leaseID: a.leaseID, projectID: l?.projectID, actionID: a.id,
                data: ["kind": .string(a.kind), "error": JSON(a.lastError), "attempts": .int(a.attempts)])
            e.seq = state.lastEventSeq + 1
            c.mutation.events = [e]
        }
        try apply(c)
    }
}
