import Logging
import NIOCore

/// One connection: admission against the caps, its read loop and its watchdog.
extension UnixSocketRPCServer {
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

    func serve(_ accepted: AcceptedConnection) async {
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
