import BerthJSON
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why the server could not start.
public struct RPCServerError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// JSON-RPC 2.0 over a Unix domain stream socket, one JSON text per line.
///
/// Each connection is served by a child task of a discarding task group, running on the
/// connection's event loop: a read loop decodes lines and dispatches them one after another (so
/// pipelined requests are answered in order) and writes each reply straight to the channel, where
/// handler-pushed notifications go too (`ConnectionOutbox`). Errors on one connection are logged
/// and end only that connection.
///
/// Limits (`RPCConnectionLimits`): a connection over `maxConnections` (or its uid's share) gets one
/// -32007 line and is closed without being counted; a per-connection watchdog task closes a
/// connection that is idle, sends a request line too slowly (-32007 / -32600 line first), or does not
/// take what is written to it. Memory per connection is bounded by the line cap, one read's worth of
/// decoded requests (the inbound stream's watermarks stop reading), the reply window and the
/// notification cap.
///
/// Lifecycle: `bind()` (throws if the socket cannot be had), then `run()`, which returns after
/// `beginGracefulShutdown()`: the listener is closed, every connection stops reading, requests already
/// being handled finish and their replies are written (requests received but not yet started are
/// answered -32007 `unavailable`), then connections close and the socket file is removed. Connections
/// still busy after `shutdownGracePeriod` are closed and their tasks cancelled. Cancelling the task
/// that runs `run()` is a hard stop: it closes everything at once and cancels in-flight handlers.
public final class UnixSocketRPCServer: Sendable {
    public enum Listen: Sendable {
        /// Bind a new socket at this path. A stale socket file (nothing listening) is removed first;
        /// the file is chmod-ed to `mode` after binding and removed when the server stops.
        case path(String, mode: UInt16 = 0o660)
        /// Adopt an already bound and listening socket (systemd socket activation, `LISTEN_FDS`).
        case fileDescriptor(Int32)
    }

    /// How many replies a connection may have queued but not yet written before its read loop waits:
    /// a client that pipelines requests but never reads replies cannot grow the server's memory.
    static let maxQueuedReplies = 32
    /// How many notifications may wait to be written before the connection is deemed stuck and closed.
    static let maxQueuedNotifications = 4096

    private let listen: Listen
    private let handler: any RPCHandler
    private let dispatcher: JSONRPCDispatcher
    private let logger: Logger
    private let maxLineLength: Int
    private let limits: RPCConnectionLimits
    private let shutdownGracePeriod: Duration
    private let eventLoopGroup: MultiThreadedEventLoopGroup
    private let state = Mutex(State())
    /// Yields when shutdown has been requested and the last connection has gone.
    private let drained: AsyncStream<Void>
    private let drainedContinuation: AsyncStream<Void>.Continuation

    public init(
        listen: Listen,
        handler: some RPCHandler,
        logger: Logger,
        maxLineLength: Int = 1 << 20,
        maxBatchSize: Int = 1000,
        limits: RPCConnectionLimits = RPCConnectionLimits(),
        shutdownGracePeriod: Duration = .seconds(10),
        eventLoopGroup: MultiThreadedEventLoopGroup = .singleton
    ) {
        precondition(maxLineLength > 0, "maxLineLength must be positive")
        self.listen = listen
        self.handler = handler
        self.dispatcher = JSONRPCDispatcher(handler: handler, maxBatchSize: maxBatchSize)
        self.logger = logger
        self.maxLineLength = maxLineLength
        self.limits = limits
        self.shutdownGracePeriod = shutdownGracePeriod
        self.eventLoopGroup = eventLoopGroup
        (self.drained, self.drainedContinuation) = AsyncStream<Void>.makeStream()
    }

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit (each connection holds a descriptor) and returns
    /// the soft limit now in force, or -1 if it cannot be read. Call once at start-up.
    @discardableResult
    public static func raiseFileDescriptorLimit() -> Int {
        FileDescriptorLimit.raise()
    }

    /// The path clients connect to: the bound path, or for an adopted descriptor the path it is bound
    /// to (nil before `bind()` or for an abstract/unnamed socket).
    public var socketPath: String? {
        state.withLock { $0.socketPath }
    }

    // MARK: - Binding

    /// Binds the socket, so the daemon can report readiness only once clients can connect.
    ///
    /// Throws `RPCServerError` when the parent directory is missing, the path is longer than a Unix
    /// socket address allows, another server is listening at the path, something other than a socket
    /// is there, or the descriptor is not a listening socket.
    public func bind() async throws {
        try state.withLock { state in
            guard case .initial = state.phase else { throw RPCServerError("bind() may only be called once") }
            state.phase = .binding
        }
        do {
            let (listener, path, boundSocket) = try await makeListener()
            state.withLock { state in
                state.listener = listener
                state.serverChannel = listener.channel
                state.socketPath = path
                state.boundSocket = boundSocket
                state.phase = .bound
            }
            logger.info("JSON-RPC server listening", metadata: ["rpc.socket": "\(path ?? "<unnamed>")"])
        } catch {
            state.withLock { $0.phase = .initial }
            throw error
        }
    }

    private func makeListener() async throws -> (NIOAsyncChannel<AcceptedConnection, Never>, String?, BoundSocket?) {
        let maxLineLength = self.maxLineLength
        let limits = self.limits
        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: 4096)
            // Keep the channel open after the client shuts down its write side, so a client that sends
            // its requests and half-closes (`nc -N`) still gets its replies.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            // One read of at most 16 KiB per readiness event: read backpressure stops further reads
            // only between events, and every line a read brings in is decoded and held, so this is
            // what bounds a flooding connection's decoded-but-unhandled requests (NIO's defaults,
            // 4 reads of up to 64 KiB, let 200 flooding connections add 84 MiB of RSS; now ~30).
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 16 << 10)
            )
        let initializer: @Sendable (any Channel) -> EventLoopFuture<AcceptedConnection> = { channel in
            PeerCredentialsReader.read(channel: channel)
                .map { Result<PeerCredentials, any Error>.success($0) }
                .recover { .failure($0) }
                .flatMapThrowing { peer in
                    let activity = ConnectionActivity(limits: limits)
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineLength: maxLineLength, activity: activity))
                    )
                    let asyncChannel = try NIOAsyncChannel<InboundFrame, Never>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))
                    )
                    return AcceptedConnection(channel: asyncChannel, peer: peer, activity: activity)
                }
        }

        switch listen {
        case .path(let path, let mode):
            try SocketFile.prepare(path: path)
            let listener: NIOAsyncChannel<AcceptedConnection, Never>
            do {
                listener = try await bootstrap.bind(
                    unixDomainSocketPath: path,
                    childChannelInitializer: initializer
                )
            } catch {
                throw RPCServerError("cannot bind \(path): \(error)")
            }
            do {
                let identity = try SocketFile.finishBinding(path: path, mode: mode)
                return (listener, path, identity)
            } catch {
                try? await listener.channel.close()
                unlink(path)
                throw error
            }

        case .fileDescriptor(let fd):
            try SocketFile.checkListening(fd: fd)
            let listener: NIOAsyncChannel<AcceptedConnection, Never>
            do {
                listener = try await bootstrap.bind(fd, childChannelInitializer: initializer)
            } catch {
                throw RPCServerError("cannot adopt socket descriptor \(fd): \(error)")
            }
            return (listener, listener.channel.localAddress?.pathname, nil)
        }
    }

    // MARK: - Serving

    /// Serves until `beginGracefulShutdown()` is called (then drains, see the type's documentation) or
    /// the task is cancelled (then stops at once). Removes the socket file it created before returning.
    public func run() async throws {
        let listener = try state.withLock { state in
            guard case .bound = state.phase, let listener = state.listener else {
                throw RPCServerError("run() requires a successful bind() and may only be called once")
            }
            state.listener = nil
            state.phase = .running
            return listener
        }
        if state.withLock({ $0.shutdownRequested }) {
            listener.channel.close(promise: nil)
        }
        defer { finish() }

        let acceptError: (any Error)? = await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                var acceptError: (any Error)?
                do {
                    try await listener.executeThenClose { inbound in
                        for try await connection in inbound {
                            // The connection's task runs on its channel's event loop: a request
                            // read there is parsed, dispatched and answered there, without a
                            // hop to another thread and back (handlers that need another
                            // executor, such as an actor, hop to it themselves).
                            let executor = EventLoopTaskExecutor(connection.channel.channel.eventLoop)
                            group.addTask(executorPreference: executor) { await self.serve(connection) }
                        }
                    }
                } catch is CancellationError {
                    // Cancelled: a hard stop, not a failure.
                } catch {
                    acceptError = error
                    logger.error("JSON-RPC listener failed", metadata: ["error": "\(error)"])
                }

                // The listener is closed: drain the connections.
                beginGracefulShutdown()
                if await !waitUntilDrained() {
                    let remaining = closeAllConnections()
                    if Task.isCancelled {
                        logger.notice(
                            "JSON-RPC server cancelled; closing connections",
                            metadata: ["rpc.connections": "\(remaining)"]
                        )
                    } else {
                        logger.warning(
                            "JSON-RPC connections still busy at the end of the shutdown grace period; closing them",
                            metadata: ["rpc.connections": "\(remaining)"]
                        )
                    }
                    group.cancelAll()
                }
                return acceptError
            }
        } onCancel: {
            beginGracefulShutdown()
        }
        if let acceptError { throw acceptError }
    }

    /// Stops accepting, lets requests in progress finish and be answered, then closes connections; `run()`
    /// returns once that is done. Safe to call from anywhere, any number of times.
    public func beginGracefulShutdown() {
        let snapshot: (listener: (any Channel)?, connections: [ConnectionHandle])? = state.withLock { state in
            guard !state.shutdownRequested else { return nil }
            state.shutdownRequested = true
            return (state.serverChannel, Array(state.connections.values))
        }
        guard let (listener, connections) = snapshot else { return }
        logger.info("JSON-RPC server shutting down", metadata: ["rpc.connections": "\(connections.count)"])
        listener?.close(promise: nil)
        for connection in connections {
            connection.beginDraining()
        }
        if connections.isEmpty { drainedContinuation.yield() }
    }

    /// True when every connection finished within the grace period; false on timeout or cancellation.
    private func waitUntilDrained() async -> Bool {
        if state.withLock({ $0.connections.isEmpty }) { return true }
        let drained = self.drained
        let grace = shutdownGracePeriod
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in drained where self.state.withLock({ $0.connections.isEmpty }) {
                    return true
                }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let result = await group.next() ?? false
            group.cancelAll()
            return result
        }
    }

    private func closeAllConnections() -> Int {
        let connections = state.withLock { Array($0.connections.values) }
        for connection in connections { connection.forceClose() }
        return connections.count
    }

    private func finish() {
        let boundSocket = state.withLock { state in
            state.phase = .finished
            state.serverChannel = nil
            return state.boundSocket
        }
        if let boundSocket { SocketFile.remove(boundSocket, logger: logger) }
        drainedContinuation.finish()
        logger.info("JSON-RPC server stopped")
    }

    // MARK: - One connection

    /// Registers the connection unless a cap is reached: then returns the refusal to send, and
    /// whether it is the first since a connection was last accepted (worth a warning; the rest of a
    /// connection storm is logged at debug, and counted).
    private func register(_ connection: ConnectionHandle, uid: UInt32) -> (refusal: RPCError, first: Bool)? {
        let limits = self.limits
        let (refusal, shuttingDown): ((RPCError, Bool)?, Bool) = state.withLock { state in
            func refuse(_ key: String, _ error: RPCError) -> ((RPCError, Bool)?, Bool) {
                state.limitCounts[key, default: 0] += 1
                defer { state.refusing = true }
                return ((error, !state.refusing), false)
            }
            if state.connections.count >= limits.maxConnections {
                return refuse("max_connections", .tooManyConnections(limit: limits.maxConnections, perUID: false))
            }
            let perUID = limits.maxConnectionsPerUID
            if perUID > 0, uid != 0, state.connectionsPerUID[uid, default: 0] >= perUID {
                return refuse("max_connections_per_uid", .tooManyConnections(limit: perUID, perUID: true))
            }
            state.refusing = false
            state.connections[connection.id] = connection
            state.connectionsPerUID[uid, default: 0] += 1
            return (nil, state.shutdownRequested)
        }
        if shuttingDown { connection.beginDraining() }
        return refusal
    }

    private func unregister(_ id: RPCConnectionID, uid: UInt32) {
        let drained = state.withLock { state in
            state.connections[id] = nil
            if let n = state.connectionsPerUID[uid] {
                state.connectionsPerUID[uid] = n > 1 ? n - 1 : nil
            }
            return state.shutdownRequested && state.connections.isEmpty
        }
        if drained { drainedContinuation.yield() }
    }

    /// Connections being served now (refused ones are never counted).
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    /// Connections refused or closed by a limit since start, by the limit's config key
    /// (`max_connections`, `max_connections_per_uid`, `idle_timeout_s`, `request_timeout_s`,
    /// `write_timeout_s`), for metrics.
    public var limitCounts: [String: Int] { state.withLock { $0.limitCounts } }

    private func countLimit(_ key: String) {
        state.withLock { $0.limitCounts[key, default: 0] += 1 }
    }

    private func serve(_ accepted: AcceptedConnection) async {
        let id = state.withLock { state in
            defer { state.nextConnectionID += 1 }
            return RPCConnectionID(rawValue: state.nextConnectionID)
        }
        var logger = self.logger
        logger[metadataKey: "rpc.connection"] = "\(id)"
        let channel = accepted.channel.channel

        let peer: PeerCredentials
        switch accepted.peer {
        case .success(let credentials):
            peer = credentials
        case .failure(let error):
            logger.warning(
                "closing JSON-RPC connection: cannot read peer credentials",
                metadata: ["error": "\(error)"]
            )
            try? await accepted.channel.executeThenClose { _, _ in }
            return
        }
        logger[metadataKey: "rpc.peer"] = "\(peer)"

        let connection = ConnectionHandle(id: id, channel: channel)
        if let (refusal, first) = register(connection, uid: peer.uid) {
            // One error line, then close: nothing is read, and the refused connection is never counted.
            logger.log(
                level: first ? .warning : .debug, "JSON-RPC connection refused: too many connections",
                metadata: ["error": "\(refusal)"])
            let line = JSONRPCDispatcher.errorResponse(refusal, id: .null).serializedBytes()
            try? await accepted.channel.executeThenClose { _, _ in
                var buffer = channel.allocator.buffer(capacity: line.count + 1)
                buffer.writeBytes(line)
                buffer.writeInteger(UInt8(ascii: "\n"))
                try? await channel.writeAndFlush(buffer)
            }
            return
        }
        defer { unregister(id, uid: peer.uid) }

        let refusal = handler.admit(peer)
        if let refusal {
            logger.info("JSON-RPC peer refused", metadata: ["error": "\(refusal)"])
        } else {
            logger.debug("JSON-RPC connection opened")
        }

        let activity = accepted.activity
        let outbox = ConnectionOutbox(channel: channel, activity: activity, logger: logger)
        let context = RPCContext(
            peer: peer,
            connection: id,
            notifications: RPCNotificationSink { method, params in
                outbox.sendNotification(method: method, params: params)
            }
        )
        let mode: JSONRPCDispatcher.Mode = refusal.map { .refuse($0) } ?? .serve
        let connectionLogger = logger
        do {
            try await accepted.channel.executeThenClose { inbound, _ in
                await withTaskGroup(of: Void.self) { group in
                    if let interval = limits.shortestTimeout {
                        group.addTask {
                            await self.watch(
                                id, activity: activity, outbox: outbox, interval: interval, logger: connectionLogger)
                        }
                    }
                    await readLoop(
                        inbound,
                        activity: activity,
                        outbox: outbox,
                        context: context,
                        mode: mode,
                        connection: connection,
                        logger: logger
                    )
                    // Let what is queued be written before the channel closes (the watchdog still
                    // closes the connection if the client does not take it).
                    outbox.finish()
                    await outbox.drain()
                    group.cancelAll()
                }
            }
        } catch {
            logger.debug("JSON-RPC connection ended with an error", metadata: ["error": "\(error)"])
        }
        outbox.finish()
        await handler.connectionClosed(id)
        logger.debug("JSON-RPC connection closed")
    }

    /// Enforces the connection's timeouts: sleeps until the next deadline its timers report, then
    /// closes the connection if it has passed (after an error line where one can still be written).
    /// Ends when cancelled (the connection is done) or once it has closed the connection.
    private func watch(
        _ id: RPCConnectionID,
        activity: ConnectionActivity,
        outbox: ConnectionOutbox,
        interval: Duration,
        logger: Logger
    ) async {
        while !Task.isCancelled {
            let verdict = activity.check(subscribed: handler.keepsConnectionOpen(id))
            switch verdict {
            case .wait(let until):
                // Never longer than the shortest timeout: a deadline that appears while asleep (a
                // line starts, a write stalls) is at least that far away when it appears.
                let bound = ContinuousClock.now + interval
                do {
                    try await Task.sleep(until: min(until ?? bound, bound), clock: .continuous)
                } catch {
                    return
                }
            case .idle:
                countLimit("idle_timeout_s")
                let seconds = limits.idleTimeout?.components.seconds ?? 0
                logger.info("closing idle JSON-RPC connection", metadata: ["rpc.idle_timeout_s": "\(seconds)"])
                let reply = JSONRPCDispatcher.errorResponse(.idleTimeout(seconds: seconds), id: .null)
                outbox.sendFinal(reply.serializedBytes())
                await closeIfStuck(outbox)
                return
            case .requestTimeout:
                countLimit("request_timeout_s")
                let seconds = limits.requestTimeout?.components.seconds ?? 0
                logger.notice(
                    "JSON-RPC request line not completed in time; closing the connection",
                    metadata: ["rpc.request_timeout_s": "\(seconds)"]
                )
                let reply = JSONRPCDispatcher.errorResponse(.requestTimeout(seconds: seconds), id: .null)
                outbox.sendFinal(reply.serializedBytes())
                await closeIfStuck(outbox)
                return
            case .writeTimeout:
                countLimit("write_timeout_s")
                // Nothing more can be written to a client that does not read: just close.
                logger.warning(
                    "JSON-RPC client is not reading its replies; closing the connection",
                    metadata: ["rpc.write_timeout_s": "\(limits.writeTimeout?.components.seconds ?? 0)"]
                )
                outbox.close()
                return
            }
        }
    }

    /// After a final error line: if the connection has not closed within a few seconds (the client's
    /// buffer is full, so the line cannot be written), closes it. Cancelled once the connection ends.
    private func closeIfStuck(_ outbox: ConnectionOutbox) async {
        do {
            try await Task.sleep(for: limits.writeTimeout ?? .seconds(5))
        } catch {
            return
        }
        outbox.close()
    }

    private func readLoop(
        _ inbound: NIOAsyncChannelInboundStream<InboundFrame>,
        activity: ConnectionActivity,
        outbox: ConnectionOutbox,
        context: RPCContext,
        mode: JSONRPCDispatcher.Mode,
        connection: ConnectionHandle,
        logger: Logger
    ) async {
        var consumed = 0
        do {
            for try await frame in inbound {
                consumed += 1
                activity.requestTaken()
                // Replies are flushed once no decoded request is left waiting: one write for the
                // replies to requests that were pipelined together, none held back otherwise.
                defer {
                    if consumed == activity.decoded {
                        outbox.flush()
                        activity.awaitingNext()
                    }
                }
                switch frame {
                case .tooLong:
                    if connection.isDraining { return }
                    logger.notice(
                        "JSON-RPC request line too long; closing the connection",
                        metadata: ["rpc.max_line_length": "\(maxLineLength)"]
                    )
                    let reply = JSONRPCDispatcher.errorResponse(.requestTooLarge(limit: maxLineLength), id: .null)
                    _ = await outbox.sendReply(reply.serializedBytes())
                    return
                case .line(let line):
                    let lineMode: JSONRPCDispatcher.Mode = connection.isDraining ? .drain : mode
                    guard let reply = await dispatcher.process(line: line, context: context, mode: lineMode) else {
                        continue
                    }
                    guard await outbox.sendReply(reply) else { return }
                }
            }
        } catch {
            logger.debug("JSON-RPC read failed", metadata: ["error": "\(error)"])
        }
    }
}

// MARK: - Supporting types

extension UnixSocketRPCServer {
    private enum Phase {
        case initial, binding, bound, running, finished
    }

    private struct State {
        var phase: Phase = .initial
        var listener: NIOAsyncChannel<AcceptedConnection, Never>?
        var serverChannel: (any Channel)?
        var socketPath: String?
        var boundSocket: BoundSocket?
        var shutdownRequested = false
        var connections: [RPCConnectionID: ConnectionHandle] = [:]
        /// Open connections per peer uid, for `maxConnectionsPerUID`.
        var connectionsPerUID: [UInt32: Int] = [:]
        /// Connections refused or closed by each limit, by config key.
        var limitCounts: [String: Int] = [:]
        /// A refusal was logged as a warning since a connection was last accepted.
        var refusing = false
        var nextConnectionID: UInt64 = 1
    }
}

/// What the child channel initializer hands to the accept loop.
struct AcceptedConnection: Sendable {
    var channel: NIOAsyncChannel<InboundFrame, Never>
    /// A failure here closes the connection in its own task: failing the initializer instead would
    /// surface as an error of the accept stream.
    var peer: Result<PeerCredentials, any Error>
    /// Frames decoded so far and the connection's timers.
    var activity: ConnectionActivity
}

/// The server's view of a live connection, for shutdown.
final class ConnectionHandle: Sendable {
    let id: RPCConnectionID
    let channel: any Channel
    private let draining = Atomic<Bool>(false)

    init(id: RPCConnectionID, channel: any Channel) {
        self.id = id
        self.channel = channel
    }

    var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Stops reading: shutting down the input side ends the inbound stream once the lines already
    /// decoded are consumed, while the output side stays open for the remaining replies.
    func beginDraining() {
        guard !draining.exchange(true, ordering: .acquiringAndReleasing) else { return }
        channel.close(mode: .input, promise: nil)
    }

    func forceClose() {
        _ = draining.exchange(true, ordering: .acquiringAndReleasing)
        channel.close(promise: nil)
    }
}

/// One connection's replies and notifications, written straight to the channel (no writer task):
/// each whole with its newline, in the order they were sent.
///
/// Replies come from the connection's own task. On the event loop (where the server runs it) a
/// reply is written at once and flushed when the read loop says so (`flush()`, when no decoded
/// request is left), so replies to pipelined requests go out in one system call; elsewhere it is
/// written and flushed at once. Notifications may come from any thread and are always flushed at
/// once.
/// A write goes to the event loop in the order it is made, so a notification sent before a reply
/// is received before it.
final class ConnectionOutbox: Sendable {
    private struct State {
        /// Replies written to the channel but not yet handed to the kernel.
        var queuedReplies = 0
        var queuedNotifications = 0
        /// The channel closed or a write failed: nothing more can be written.
        var closed = false
        /// The connection is ending: no more notifications are taken.
        var finished = false
        /// A final error line was sent (a timeout): nothing more is taken, the channel is closing.
        var closing = false
        /// Replies written on the event loop since the last flush (the write clock starts at a flush).
        var unflushed = 0
        /// The read loop, waiting for room in the reply window.
        var replyWaiter: CheckedContinuation<Bool, Never>?
        /// The connection's task, waiting for everything queued to be written.
        var drainWaiter: CheckedContinuation<Void, Never>?

        var isDrained: Bool { closed || (queuedReplies == 0 && queuedNotifications == 0) }
    }

    private let channel: any Channel
    private let activity: ConnectionActivity
    private let logger: Logger
    private let state = Mutex(State())

    init(channel: any Channel, activity: ConnectionActivity, logger: Logger) {
        self.channel = channel
        self.activity = activity
        self.logger = logger
        // Once the channel is closed nothing more can be written: make `send` report it.
        channel.closeFuture.whenComplete { [weak self] _ in self?.markClosed() }
    }

    /// Writes a reply, first waiting while `maxQueuedReplies` are already waiting to be written (a
    /// client that pipelines requests but does not read replies stalls only its own read loop).
    /// Returns false once the connection is unusable.
    func sendReply(_ bytes: [UInt8]) async -> Bool {
        var admitted: Bool? = state.withLock { s in
            if s.closed || s.closing { return false }
            if s.queuedReplies < UnixSocketRPCServer.maxQueuedReplies {
                s.queuedReplies += 1
                return true
            }
            return nil
        }
        if admitted == nil {
            flush()
            admitted = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now: Bool? = state.withLock { s in
                    if s.closed || s.closing { return false }
                    if s.queuedReplies < UnixSocketRPCServer.maxQueuedReplies {
                        s.queuedReplies += 1
                        return true
                    }
                    s.replyWaiter = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        }
        guard admitted == true else { return false }
        write(bytes, reply: true)
        return true
    }

    func sendNotification(method: String, params: JSON) -> Bool {
        let verdict: Bool? = state.withLock { s in
            if s.closed || s.finished || s.closing { return false }
            if s.queuedNotifications >= UnixSocketRPCServer.maxQueuedNotifications { return nil }
            s.queuedNotifications += 1
            return true
        }
        guard let verdict else {
            logger.warning("JSON-RPC client is not reading its notifications; closing the connection")
            markClosed()
            channel.close(promise: nil)
            return false
        }
        guard verdict else { return false }
        let message: JSON = ["jsonrpc": "2.0", "method": .string(method), "params": params]
        write(message.serializedBytes(), reply: false)
        return true
    }

    /// No more notifications are taken (the connection is ending).
    func finish() {
        state.withLock { $0.finished = true }
    }

    /// Writes a last error line (id null), then closes the channel once it is written. Nothing more
    /// is taken: the read loop stops at its next reply.
    func sendFinal(_ bytes: [UInt8]) {
        let wasClosed = state.withLock { s in
            defer { s.closing = true }
            return s.closed || s.closing
        }
        guard !wasClosed else { return }
        var buffer = channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        let channel = self.channel
        channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Closes the channel at once (a client that does not read, or a final line that cannot be written).
    func close() {
        markClosed()
        channel.close(promise: nil)
    }

    /// Returns once everything queued has been handed to the kernel, or the channel has closed (a
    /// write stuck on a client that does not read fails when the channel is closed).
    func drain() async {
        flush()
        if state.withLock({ $0.isDrained }) { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s in
                if s.isDrained { return true }
                s.drainWaiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func write(_ bytes: [UInt8], reply: Bool) {
        var buffer = channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        let promise = channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { [self] result in
            activity.written()
            if case .failure(let error) = result {
                logger.debug("JSON-RPC write failed", metadata: ["error": "\(error)"])
                markClosed()
            } else {
                written(reply: reply)
            }
        }
        if reply, channel.eventLoop.inEventLoop {
            state.withLock { $0.unflushed += 1 }
            channel.write(buffer, promise: promise)
        } else {
            activity.flushed(1)
            channel.writeAndFlush(buffer, promise: promise)
        }
    }

    /// Sends the replies written so far (written off the event loop, they are already flushed).
    func flush() {
        guard channel.eventLoop.inEventLoop else { return }
        let count = state.withLock { s in
            defer { s.unflushed = 0 }
            return s.unflushed
        }
        activity.flushed(count)
        channel.flush()
    }

    private func written(reply: Bool) {
        let resume: (CheckedContinuation<Bool, Never>?, CheckedContinuation<Void, Never>?) = state.withLock { s in
            var waiter: CheckedContinuation<Bool, Never>? = nil
            if reply {
                s.queuedReplies -= 1
                if let w = s.replyWaiter, !s.closed {
                    s.replyWaiter = nil
                    s.queuedReplies += 1
                    waiter = w
                }
            } else {
                s.queuedNotifications -= 1
            }
            var drained: CheckedContinuation<Void, Never>? = nil
            if s.isDrained, let d = s.drainWaiter {
                s.drainWaiter = nil
                drained = d
            }
            return (waiter, drained)
        }
        resume.0?.resume(returning: true)
        resume.1?.resume()
    }

    private func markClosed() {
        let (waiter, drained) = state.withLock { s in
            s.closed = true
            defer {
                s.replyWaiter = nil
                s.drainWaiter = nil
            }
            return (s.replyWaiter, s.drainWaiter)
        }
        waiter?.resume(returning: false)
        drained?.resume()
    }
}

/// Runs tasks on a NIO event loop (this NIO has no `TaskExecutor` conformance of its own).
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// Identity of the socket file this server created, so it removes its own file and not a successor's.
struct BoundSocket: Sendable {
    var path: String
    var device: UInt64
    var inode: UInt64
}

/// Filesystem side of binding by path.
enum SocketFile {
    /// Longest path `sockaddr_un.sun_path` holds, without its terminating NUL.
    static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// Checks the parent directory and clears a stale socket file, refusing to touch a live server's
    /// socket or anything that is not a socket.
    static func prepare(path: String) throws {
        guard !path.isEmpty else { throw RPCServerError("socket path is empty") }
        guard path.utf8.count <= maxPathLength else {
            throw RPCServerError(
                "socket path \(path) is \(path.utf8.count) bytes long; Unix sockets allow at most \(maxPathLength)"
            )
        }
        let parent: String
        if let slash = path.lastIndex(of: "/") {
            parent = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            parent = "."
        }
        var info = stat()
        if stat(parent, &info) != 0 {
            throw RPCServerError("cannot bind \(path): directory \(parent): \(errnoText())")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw RPCServerError("cannot bind \(path): \(parent) is not a directory")
        }

        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw RPCServerError("cannot bind \(path): \(errnoText())")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw RPCServerError("cannot bind \(path): the path exists and is not a socket")
        }
        switch probe(path: path) {
        case .listening:
            throw RPCServerError("cannot bind \(path): another server is already listening on it")
        case .stale:
            if unlink(path) != 0, errno != ENOENT {
                throw RPCServerError("cannot remove stale socket \(path): \(errnoText())")
            }
        case .unknown(let code):
            throw RPCServerError(
                "cannot bind \(path): cannot tell whether the existing socket is in use: \(errnoText(code))"
            )
        }
    }

    enum ProbeResult { case listening, stale, unknown(Int32) }

    /// Connects without blocking: refused means nobody is listening (a leftover of a crashed server).
    static func probe(path: String) -> ProbeResult {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(AF_UNIX, type, 0)
        guard fd >= 0 else { return .unknown(errno) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
        }
        let rc = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc == 0 { return .listening }
        switch errno {
        case ECONNREFUSED: return .stale
        case EAGAIN, EINPROGRESS: return .listening  // backlog full: someone is definitely there
        case let code: return .unknown(code)
        }
    }

    static func finishBinding(path: String, mode: UInt16) throws -> BoundSocket {
        guard chmod(path, mode_t(mode)) == 0 else {
            throw RPCServerError("cannot chmod \(path) to \(String(mode, radix: 8)): \(errnoText())")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw RPCServerError("cannot stat \(path) after binding: \(errnoText())")
        }
        return BoundSocket(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Removes the socket file if it is still the one this server bound.
    static func remove(_ socket: BoundSocket, logger: Logger) {
        var info = stat()
        guard lstat(socket.path, &info) == 0 else { return }
        guard UInt64(info.st_dev) == socket.device, UInt64(info.st_ino) == socket.inode else {
            logger.notice("socket file was replaced; leaving it", metadata: ["rpc.socket": "\(socket.path)"])
            return
        }
        if unlink(socket.path) != 0 {
            logger.warning(
                "cannot remove socket file",
                metadata: ["rpc.socket": "\(socket.path)", "error": "\(errnoText())"]
            )
        }
    }

    /// A socket-activated descriptor must be a listening stream socket.
    static func checkListening(fd: Int32) throws {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0 else {
            throw RPCServerError("descriptor \(fd) is not a usable socket: \(errnoText())")
        }
        guard value != 0 else { throw RPCServerError("socket descriptor \(fd) is not listening") }
        length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) == 0 else {
            throw RPCServerError("descriptor \(fd) is not a usable socket: \(errnoText())")
        }
        guard value == Int32(SOCK_STREAM.rawValue) else {
            throw RPCServerError("socket descriptor \(fd) is not a stream socket")
        }
    }
}
