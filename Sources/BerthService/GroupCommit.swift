import BerthCore
import BerthStore
import Logging
import Synchronization

/// Group commit of the scheduler's changes: many changes, one SQLite transaction, one fsync.
///
/// The scheduler actor plans a change, hands it to `enqueue` (which numbers it with a *ticket*),
/// applies it to memory and goes on with the next request while the change is written. Nothing is
/// acknowledged from memory alone: every reply waits in `waitDurable(_:)` until everything the
/// actor had applied when it produced that reply is on disk (a read waits too when it may have
/// seen a change still being written). So the actor never waits for the disk, and requests that
/// arrive during one fsync share the next one.
///
/// Who writes: the first waiter that finds no commit in progress becomes the *leader*. It takes
/// every pending change, commits them in ticket order in one transaction, publishes their events
/// (in order, before any later batch can), answers every waiter its batch covered, and hands the
/// leadership to a waiter whose change came later (it then takes all that is pending by then).
/// There is no background task: commits run in the tasks of the requests that wait for them.
///
/// A failed commit fails its whole batch and every change enqueued after it (they were planned on
/// top of it) with `unavailable`, and from then on `enqueue` refuses until the actor has rebuilt
/// its memory from the store (`needsRestore`, `restored()`): memory never goes on claiming what
/// the disk does not have, and no reply ever reports a change that is not on disk.
///
/// A storage fault that lasts (disk full, read-only file system, I/O errors) would otherwise make
/// every write plan, fail and rebuild memory from the store: each further consecutive failure
/// refuses new changes for a growing pause (`backoff(afterFailures:)`, up to 5 s) without touching
/// memory, so readers are not starved by rebuilds. Reads keep being served. The first commit that
/// succeeds clears the fault; `storageFault` says what the last one was, for `system.health`.
final class GroupCommit: Sendable {
    typealias Ticket = Int64

    private enum Outcome: Sendable {
        case durable
        case failed(BerthError)
        /// The waiter is the new leader: it commits what is pending.
        case lead
    }

    private struct Waiter {
        var ticket: Ticket
        var continuation: CheckedContinuation<Outcome, Never>
    }

    private struct State {
        /// Enqueued and not yet taken by a leader, in ticket order.
        var pending: [BerthStore.Mutation] = []
        /// Ticket of `pending.first` (tickets are consecutive).
        var firstPending: Ticket = 1
        /// The last ticket handed out.
        var enqueued: Ticket = 0
        /// Every ticket up to this one is on disk, or failed (see `failures`).
        var settled: Ticket = 0
        /// The last ticket that reached the disk.
        var committed: Ticket = 0
        /// Tickets that failed, and why (a failure is rare: this stays tiny).
        var failures: [(tickets: ClosedRange<Ticket>, error: BerthError)] = []
        var leading = false
        var waiters: [Waiter] = []
        /// A commit failed: memory must be rebuilt from the store before anything else is enqueued.
        var mustRestore = false
        /// Commits that failed in a row (0 after a success).
        var consecutiveFailures = 0
        /// While storage keeps failing, new changes are refused until then.
        var refuseUntil: ContinuousClock.Instant?
        /// The last failure, until a commit succeeds.
        var fault: BerthError?
        /// Commits that failed since start.
        var failedCommits = 0

        func outcome(of ticket: Ticket) -> Outcome? {
            guard ticket <= settled else { return nil }
            for f in failures where f.tickets.contains(ticket) { return .failed(f.error) }
            return .durable
        }
    }

    private let store: BerthStore
    private let logger: Logger
    /// Called by the leader after a successful commit, with the batch in ticket order, before any
    /// waiter is answered and before a later batch can be committed.
    private let committedBatch: @Sendable ([BerthStore.Mutation]) -> Void
    private let state = Mutex(State())

    init(store: BerthStore, logger: Logger, committed: @escaping @Sendable ([BerthStore.Mutation]) -> Void) {
        self.store = store
        self.logger = logger
        self.committedBatch = committed
    }

    /// Queues a change for the next commit and returns its ticket. Refuses (`unavailable`) after a
    /// failed commit until the scheduler has restored its memory from the store.
    func enqueue(_ mutation: BerthStore.Mutation) throws(BerthError) -> Ticket {
        let now = ContinuousClock.now
        let ticket: Result<Ticket, BerthError> = state.withLock { s in
            if let refusal = GroupCommit.refusal(s, now: now) { return .failure(refusal) }
            if s.pending.isEmpty { s.firstPending = s.enqueued + 1 }
            s.enqueued += 1
            s.pending.append(mutation)
            return .success(s.enqueued)
        }
        return try ticket.get()
    }

    /// Throws what `enqueue` would throw now: for a change that must touch memory before it can
    /// be enqueued (moving the manual clock), so a refused one leaves memory as it was.
    func checkWritable() throws(BerthError) {
        let now = ContinuousClock.now
        if let refusal = state.withLock({ GroupCommit.refusal($0, now: now) }) { throw refusal }
    }

    private static func refusal(_ s: State, now: ContinuousClock.Instant) -> BerthError? {
        if s.mustRestore {
            return BerthError(.unavailable, "storage failed and berthd is restoring its state from disk; retry")
        }
        if let until = s.refuseUntil, now < until, let fault = s.fault {
            let wait = until - now
            let ms = wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000
            return BerthError(
                .unavailable,
                "storage is failing (\(fault.message)); nothing was changed, writes are retried in \(max(ms, 1)) ms",
                data: fault.data)
        }
        return nil
    }

    /// How long new changes are refused after `failures` commits failed in a row: not at all after
    /// the first (a passing fault, e.g. a lock held for a moment), then 100 ms doubling up to 5 s,
    /// so a lasting fault costs one failed commit and one rebuild per pause, not one per request.
    static func backoff(afterFailures failures: Int) -> Duration {
        guard failures > 1 else { return .zero }
        return min(.milliseconds(100) * (1 << min(failures - 2, 10)), .seconds(5))
    }

    /// Commits that failed since start (a metric).
    var failedCommits: Int { state.withLock { $0.failedCommits } }

    /// Ends a back-off at once, so tests need not wait it out.
    func endBackOff() { state.withLock { $0.refuseUntil = nil } }

    /// The last commit's failure while storage is failing (nil once a commit succeeds): what
    /// `system.health` reports as `storage`.
    var storageFault: BerthError? { state.withLock { $0.fault } }

    /// True once `ticket` is on disk or has failed.
    func isSettled(_ ticket: Ticket) -> Bool { state.withLock { ticket <= $0.settled } }

    /// True after a failed commit, until `restored()`.
    var needsRestore: Bool { state.withLock { $0.mustRestore } }

    /// True when every ticket handed out is settled (nothing waits to be written).
    var isDrained: Bool { state.withLock { $0.settled == $0.enqueued && !$0.leading } }

    /// The scheduler has rebuilt its memory from the store: enqueueing resumes. Returns the ticket
    /// that memory now reflects (the last one on disk).
    func restored() -> Ticket {
        state.withLock { s in
            s.mustRestore = false
            return s.committed
        }
    }

    /// Returns once the change with `ticket`, and every change before it, is on disk; throws the
    /// commit's error (`unavailable`) if it failed. Ticket 0 (nothing changed yet) returns at once.
    func waitDurable(_ ticket: Ticket) async throws(BerthError) {
        var outcome: Outcome? = state.withLock { s in
            if let o = s.outcome(of: ticket) { return o }
            if !s.leading {
                s.leading = true
                return .lead
            }
            return nil
        }
        if outcome == nil {
            outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                let now: Outcome? = state.withLock { s in
                    if let o = s.outcome(of: ticket) { return o }
                    if !s.leading {
                        s.leading = true
                        return .lead
                    }
                    s.waiters.append(Waiter(ticket: ticket, continuation: continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        }
        switch outcome! {
        case .durable: return
        case .failed(let e): throw e
        case .lead: try await lead(ticket)
        }
    }

    /// Commits everything pending (which includes `ticket`: it was enqueued before its waiter came),
    /// settles the waiters, and passes the leadership on.
    private func lead(_ ticket: Ticket) async throws(BerthError) {
        let (batch, first) = state.withLock { s in
            let b = s.pending
            s.pending = []
            return (b, s.firstPending)
        }
        let last = first + Ticket(batch.count) - 1
        // The write blocks its thread for the fsync: keep it off an event loop that a connection
        // task may be running on.
        let failure: BerthError? = await withTaskExecutorPreference(globalConcurrentExecutor) {
            do throws(BerthError) {
                try store.commit(batch)
                return nil
            } catch {
                return error
            }
        }
        if failure == nil, !batch.isEmpty { committedBatch(batch) }
        if let failure {
            logger.error(
                "group commit failed; failing its requests and restoring state from the store",
                metadata: ["commit.changes": "\(batch.count)", "error": "\(failure.message)"])
        }

        var resume: [(CheckedContinuation<Outcome, Never>, Outcome)] = []
        let mine: Outcome = state.withLock { s in
            if let failure {
                // Everything enqueued since was planned on top of this batch: it fails too.
                let error = BerthError(
                    .unavailable, "the change could not be stored (\(failure.message)); nothing was changed, retry",
                    data: failure.data)
                if s.enqueued >= first { s.failures.append((first...s.enqueued, error)) }
                s.pending = []
                s.settled = s.enqueued
                s.mustRestore = true
                s.consecutiveFailures += 1
                s.failedCommits += 1
                s.fault = failure
                let pause = GroupCommit.backoff(afterFailures: s.consecutiveFailures)
                s.refuseUntil = pause > .zero ? ContinuousClock.now + pause : nil
            } else if !batch.isEmpty {
                s.settled = last
                s.committed = last
                s.consecutiveFailures = 0
                s.refuseUntil = nil
                s.fault = nil
            }
            var waiting: [Waiter] = []
            for w in s.waiters {
                if let o = s.outcome(of: w.ticket) { resume.append((w.continuation, o)) } else { waiting.append(w) }
            }
            // Someone still waits for a later change: it leads the next batch (which holds it).
            if !waiting.isEmpty {
                let next = waiting.removeFirst()
                resume.append((next.continuation, .lead))
            } else {
                s.leading = false
            }
            s.waiters = waiting
            return s.outcome(of: ticket) ?? .failed(BerthError(.internalError, "group commit lost ticket \(ticket)"))
        }
        for (c, o) in resume { c.resume(returning: o) }
        switch mine {
        case .durable, .lead: return
        case .failed(let e): throw e
        }
    }
}
