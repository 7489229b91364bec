import BerthJSON
import Logging
import NIOCore
import Synchronization

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
