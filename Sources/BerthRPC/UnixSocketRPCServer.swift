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

    // Those not `private` are shared with the connection extension in its own file.
    private let listen: Listen
    let handler: any RPCHandler
    let dispatcher: JSONRPCDispatcher
    let logger: Logger
    let maxLineLength: Int
    let limits: RPCConnectionLimits
    private let shutdownGracePeriod: Duration
    private let eventLoopGroup: MultiThreadedEventLoopGroup
    let state = Mutex(State())
    /// Yields when shutdown has been requested and the last connection has gone.
    private let drained: AsyncStream<Void>
    let drainedContinuation: AsyncStream<Void>.Continuation

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
}

extension UnixSocketRPCServer {
    enum Phase {
        case initial, binding, bound, running, finished
    }

    struct State {
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
