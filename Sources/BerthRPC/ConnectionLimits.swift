import Synchronization

/// Per-server caps on connections and per-connection timeouts, so that no client, or crowd of
/// clients, can exhaust the daemon's descriptors or memory or hold a connection forever.
public struct RPCConnectionLimits: Sendable, Equatable {
    /// Connections served at once; one more gets -32007 and is closed. Keep it below the descriptor
    /// limit, which the store, the event loops and the refused connection itself also need.
    public var maxConnections: Int
    /// Connections one uid may hold at once (0: no per-uid cap). uid 0 is exempt, so a local user who
    /// fills their share leaves room for everyone else and root can always get in (unless the global
    /// cap is reached).
    public var maxConnectionsPerUID: Int
    /// Close a connection after this long with nothing to do: no request being read or handled,
    /// nothing left to write, and no subscription (nil: never).
    public var idleTimeout: Duration?
    /// Close a connection whose request line was started but not finished within this long while
    /// the server was waiting for it (nil: never).
    public var requestTimeout: Duration?
    /// Close a connection whose written replies or notifications have not been taken by the client
    /// for this long (nil: never).
    public var writeTimeout: Duration?

    public init(
        maxConnections: Int = 4096,
        maxConnectionsPerUID: Int = 1024,
        idleTimeout: Duration? = .seconds(300),
        requestTimeout: Duration? = .seconds(30),
        writeTimeout: Duration? = .seconds(60)
    ) {
        precondition(maxConnections > 0, "maxConnections must be positive")
        precondition(maxConnectionsPerUID >= 0, "maxConnectionsPerUID must not be negative")
        self.maxConnections = maxConnections
        self.maxConnectionsPerUID = maxConnectionsPerUID
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.writeTimeout = writeTimeout
    }

    /// No caps and no timeouts.
    public static let unlimited = RPCConnectionLimits(
        maxConnections: .max, maxConnectionsPerUID: 0, idleTimeout: nil, requestTimeout: nil, writeTimeout: nil
    )

    /// The shortest timeout, nil when none is set: how long the watchdog may sleep when no deadline
    /// is pending (any deadline that appears later is at least this far from when it appears).
    var shortestTimeout: Duration? {
        [idleTimeout, requestTimeout, writeTimeout].compactMap { $0 }.min()
    }
}

/// The time-keeping of one connection, without clocks or sockets: the decoder, the read loop and
/// the outbox report what happens, and the watchdog asks `check(at:)` what to do and when to look
/// again.
///
/// Each timeout runs only while the server is waiting for the client, never while the client is
/// waiting for the server: a request being handled, or decoded requests queued behind it (read
/// backpressure), stop the idle and request clocks; replies written but not yet flushed (held back
/// to batch pipelined replies) do not start the write clock.
struct ConnectionTimers: Equatable {
    typealias Instant = ContinuousClock.Instant

    enum Verdict: Equatable {
        /// Nothing to do; look again at this instant, or after the shortest timeout if that is
        /// sooner (nil: no deadline is pending).
        case wait(until: Instant?)
        /// Nothing complete arrived for `idleTimeout` and nothing is pending.
        case idle
        /// A request line has been arriving for longer than `requestTimeout`.
        case requestTimeout
        /// Flushed output has not been taken by the client for `writeTimeout`.
        case writeTimeout
    }

    let idleTimeout: Duration?
    let requestTimeout: Duration?
    let writeTimeout: Duration?

    /// The read loop is waiting for the next request (none being handled, none decoded and queued).
    private(set) var awaitingRequest = true
    /// When the read loop last began waiting.
    private(set) var awaitingSince: Instant
    /// When the first bytes of the unfinished line arrived; nil when no partial line is buffered.
    private(set) var partialSince: Instant?
    /// Last time output was taken by the client (a subscriber reading its notifications is busy).
    private(set) var lastWritten: Instant
    /// Writes flushed to the channel and not yet taken by the kernel.
    private(set) var flushedOutstanding = 0
    /// Since when flushed output has been waiting without progress; nil when none is waiting.
    private(set) var writeStallSince: Instant?

    init(idleTimeout: Duration?, requestTimeout: Duration?, writeTimeout: Duration?, now: Instant) {
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.writeTimeout = writeTimeout
        self.awaitingSince = now
        self.lastWritten = now
    }

    /// Bytes arrived; `partial` says whether an unfinished line is left buffered after decoding them.
    /// Bytes alone (blank lines, a line trickling in) do not reset the idle clock: only a complete
    /// request does.
    mutating func received(partial: Bool, at now: Instant) {
        if !partial {
            partialSince = nil
        } else if partialSince == nil {
            partialSince = now
        }
    }

    /// A complete line was decoded: whatever partial line there was is finished.
    mutating func lineCompleted() {
        partialSince = nil
    }

    /// The read loop took a request to handle.
    mutating func requestTaken() {
        awaitingRequest = false
    }

    /// The read loop is done with its request and waits for the next one.
    mutating func awaitingNext(at now: Instant) {
        awaitingRequest = true
        awaitingSince = now
    }

    /// `count` writes were flushed towards the client.
    mutating func flushed(_ count: Int, at now: Instant) {
        guard count > 0 else { return }
        if flushedOutstanding == 0 { writeStallSince = now }
        flushedOutstanding += count
    }

    /// One flushed write was taken by the kernel (or failed).
    mutating func written(at now: Instant) {
        flushedOutstanding = max(0, flushedOutstanding - 1)
        lastWritten = now
        writeStallSince = flushedOutstanding > 0 ? now : nil
    }

    /// What to do at `now`. `subscribed`: the handler keeps the connection open for notifications.
    func check(at now: Instant, subscribed: Bool) -> Verdict {
        var next: Instant? = nil
        func consider(_ deadline: Instant) { next = next.map { min($0, deadline) } ?? deadline }

        if let writeTimeout, let since = writeStallSince {
            let deadline = since + writeTimeout
            if now >= deadline { return .writeTimeout }
            consider(deadline)
        }
        if awaitingRequest, let requestTimeout, let partialSince {
            // Counted from when the server began waiting: bytes left unread while it was busy with
            // earlier requests are not the client's delay.
            let deadline = max(partialSince, awaitingSince) + requestTimeout
            if now >= deadline { return .requestTimeout }
            consider(deadline)
        }
        if awaitingRequest, partialSince == nil, flushedOutstanding == 0, let idleTimeout {
            let deadline = max(awaitingSince, lastWritten) + idleTimeout
            if now >= deadline {
                if !subscribed { return .idle }
                consider(now + idleTimeout)
            } else {
                consider(deadline)
            }
        }
        return .wait(until: next)
    }
}

/// A connection's `ConnectionTimers`, shared by the decoder (on the event loop), the read loop, the
/// outbox (completions on the event loop, notifications from any thread) and the watchdog.
final class ConnectionActivity: Sendable {
    private let timers: Mutex<ConnectionTimers>
    /// Frames decoded so far, so the read loop can tell whether more are already waiting.
    private let decodedFrames = Atomic<Int>(0)

    init(limits: RPCConnectionLimits, now: ContinuousClock.Instant = .now) {
        timers = Mutex(
            ConnectionTimers(
                idleTimeout: limits.idleTimeout,
                requestTimeout: limits.requestTimeout,
                writeTimeout: limits.writeTimeout,
                now: now
            )
        )
    }

    /// Frames decoded so far on this connection.
    var decoded: Int { decodedFrames.load(ordering: .acquiring) }

    func frameDecoded() {
        decodedFrames.add(1, ordering: .releasing)
        timers.withLock { $0.lineCompleted() }
    }

    func received(partial: Bool) {
        let now = ContinuousClock.now
        timers.withLock { $0.received(partial: partial, at: now) }
    }

    func requestTaken() { timers.withLock { $0.requestTaken() } }

    func awaitingNext() {
        let now = ContinuousClock.now
        timers.withLock { $0.awaitingNext(at: now) }
    }

    func flushed(_ count: Int) {
        guard count > 0 else { return }
        let now = ContinuousClock.now
        timers.withLock { $0.flushed(count, at: now) }
    }

    func written() {
        let now = ContinuousClock.now
        timers.withLock { $0.written(at: now) }
    }

    func check(subscribed: Bool) -> ConnectionTimers.Verdict {
        let now = ContinuousClock.now
        return timers.withLock { $0.check(at: now, subscribed: subscribed) }
    }

    var snapshot: ConnectionTimers { timers.withLock { $0 } }
}
