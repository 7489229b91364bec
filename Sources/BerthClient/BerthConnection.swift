import BerthContract
import BerthJSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// One connection to berthd over its Unix socket, speaking newline-delimited JSON-RPC 2.0.
///
/// Blocking I/O. Not thread-safe and deliberately not `Sendable`: one user at a time. A connection
/// created inside a task may be handed to another task as long as the first stops using it; for
/// concurrency, open one connection per task.
///
/// Notifications (`{"method": "event", ...}`) that arrive while a call waits for its reply are
/// kept in order and handed out by `nextNotification()`.
public final class BerthConnection {
    /// Where berthd listens unless told otherwise (`berthd --socket PATH`; berthctl honours `BERTH_SOCKET`).
    public static let defaultSocketPath = "/run/berth/berth.sock"

    /// The path this connection was opened on.
    public let socketPath: String

    private var fd: Int32
    private var nextID: Int64 = 1
    private var buffer: [UInt8] = []
    private var consumed = 0  // bytes of `buffer` already returned
    private var scanned = 0  // `buffer[consumed..<scanned]` holds no newline
    private var sawEOF = false
    private var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    private var notifications: [JSON] = []
    private var notificationHead = 0

    /// Connects to the socket at `socketPath`. A path starting with `@` names a Linux abstract socket.
    public init(socketPath: String) throws(BerthClientError) {
        self.socketPath = socketPath
        self.fd = try Self.connectUnix(path: socketPath)
    }

    deinit {
        if fd >= 0 { _ = Glibc_close(fd) }
    }

    /// True once `close()` was called.
    public var isClosed: Bool { fd < 0 }

    /// Closes the socket. Calling it again does nothing; any later use throws `.io`.
    public func close() {
        if fd >= 0 {
            _ = Glibc_close(fd)
            fd = -1
        }
    }

    // MARK: - Calls

    /// Calls `method` and returns its `result`; an error reply is thrown as `RPCErrorResponse`.
    public func call(_ method: String, _ params: JSON? = nil) throws -> JSON {
        try Self.unwrap(try callRaw(method, params))
    }

    /// Calls one of the contract's methods and returns its `result`.
    public func call(_ method: RPCMethod, _ params: JSON? = nil) throws -> JSON {
        try call(method.rawValue, params)
    }

    /// Calls `method` and returns the whole response object (`jsonrpc`, `id`, `result` or `error`).
    ///
    /// An error reply with `"id": null` is taken as the answer (the daemon could not read the request's id);
    /// so after `send(rawLine:)`, read that line's reply with `readMessage()` before calling again.
    public func callRaw(_ method: String, _ params: JSON?) throws -> JSON {
        let id = nextID
        nextID += 1
        var line: [UInt8] = []
        Self.request(id: id, method: method, params: params).write(into: &line)
        try send(rawLine: line)
        while true {
            guard let message = try readMessage() else {
                throw BerthClientError.io("berthd closed the connection before answering \(method)")
            }
            if try stashIfNotification(message) { continue }
            let replyID = message["id"]
            if replyID == .int(id) || (replyID == .null && message["error"] != nil) { return message }
            throw BerthClientError.protocolViolation(
                "reply with id \(replyID?.serialized() ?? "none") while waiting for id \(id)")
        }
    }

    /// Sends a JSON-RPC notification (no `id`, no reply).
    public func notify(_ method: String, _ params: JSON? = nil) throws {
        var o: [String: JSON] = ["jsonrpc": "2.0", "method": .string(method)]
        if let params { o["params"] = params }
        try send(rawLine: JSON.object(o).serializedBytes())
    }

    /// Writes every request first, then reads every reply (replies are matched by id).
    /// The write side drains incoming data while the socket is full, so long pipelines cannot deadlock.
    public func pipeline(_ calls: [(String, JSON?)]) throws -> [Result<JSON, RPCErrorResponse>] {
        if calls.isEmpty { return [] }
        let firstID = nextID
        var out: [UInt8] = []
        out.reserveCapacity(calls.count * 64)
        for (method, params) in calls {
            Self.request(id: nextID, method: method, params: params).write(into: &out)
            out.append(0x0A)
            nextID += 1
        }
        try writeAll(out)

        var replies = [JSON?](repeating: nil, count: calls.count)
        var outstanding = calls.count
        while outstanding > 0 {
            guard let message = try readMessage() else {
                throw BerthClientError.io("berthd closed the connection with \(outstanding) replies outstanding")
            }
            if try stashIfNotification(message) { continue }
            let index: Int
            if case .int(let id)? = message["id"], id >= firstID, id < firstID + Int64(calls.count) {
                index = Int(id - firstID)
            } else if message["id"] == .null, message["error"] != nil,
                let oldest = replies.firstIndex(where: { $0 == nil })
            {
                // The server could not read a request's id; replies come in order, so it is the oldest open one.
                index = oldest
            } else {
                throw BerthClientError.protocolViolation(
                    "unexpected reply id \(message["id"]?.serialized() ?? "none") in a pipeline")
            }
            guard replies[index] == nil else {
                throw BerthClientError.protocolViolation("two replies for id \(firstID + Int64(index))")
            }
            replies[index] = message
            outstanding -= 1
        }
        return try replies.map { reply in
            do {
                return .success(try Self.unwrap(reply!))
            } catch let e as RPCErrorResponse {
                return .failure(e)
            }
        }
    }

    // MARK: - Messages and notifications

    /// The next JSON message from the daemon (a reply or a notification), or nil at end of stream.
    /// Blank lines are skipped. Queued notifications are not returned here.
    public func readMessage() throws -> JSON? {
        while let line = try readLine() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            do {
                return try JSONParser.parse(line)
            } catch {
                throw BerthClientError.protocolViolation("berthd sent invalid JSON (\(error))")
            }
        }
        return nil
    }

    /// Blocks until an event notification arrives and returns it whole
    /// (`{"jsonrpc": "2.0", "method": "event", "params": event}`); nil when the daemon closes the connection.
    /// Notifications with other methods are skipped.
    public func nextNotification() throws -> JSON? {
        while true {
            if notificationHead < notifications.count {
                let n = notifications[notificationHead]
                notificationHead += 1
                if notificationHead == notifications.count {
                    notifications.removeAll(keepingCapacity: true)
                    notificationHead = 0
                }
                if n["method"]?.stringValue == "event" { return n }
                continue
            }
            guard let message = try readMessage() else { return nil }
            if try stashIfNotification(message) { continue }
            throw BerthClientError.protocolViolation(
                "reply with id \(message["id"]?.serialized() ?? "none") while waiting for a notification")
        }
    }

    /// Notifications received but not yet taken by `nextNotification()`.
    public var pendingNotificationCount: Int { notifications.count - notificationHead }

    /// Queues `message` if it is a notification; throws if it is neither a notification nor a reply.
    private func stashIfNotification(_ message: JSON) throws -> Bool {
        guard case .object(let o) = message else {
            throw BerthClientError.protocolViolation("expected a JSON object, got \(message.typeName)")
        }
        if o["id"] != nil {
            guard o["result"] != nil || o["error"] != nil else {
                throw BerthClientError.protocolViolation("a reply with neither result nor error")
            }
            return false
        }
        guard o["method"]?.stringValue != nil else {
            throw BerthClientError.protocolViolation("a message with neither id nor method")
        }
        notifications.append(message)
        return true
    }

    static func request(id: Int64, method: String, params: JSON?) -> JSON {
        var o: [String: JSON] = ["jsonrpc": "2.0", "id": .int(id), "method": .string(method)]
        if let params { o["params"] = params }
        return .object(o)
    }

    static func unwrap(_ reply: JSON) throws -> JSON {
        if let error = reply["error"], !error.isNull { throw RPCErrorResponse(errorObject: error) }
        guard let result = reply["result"] else {
            throw BerthClientError.protocolViolation("a reply with neither result nor error")
        }
        return result
    }

    // MARK: - Lines

    /// Writes `rawLine` followed by a newline.
    public func send(rawLine: [UInt8]) throws {
        var bytes = rawLine
        bytes.append(0x0A)
        try writeAll(bytes)
    }

    /// The next line without its newline, or nil at end of stream. A last line without a newline is returned as is.
    public func readLine() throws -> [UInt8]? {
        while true {
            if let nl = buffer[scanned...].firstIndex(of: 0x0A) {
                let line = Array(buffer[consumed..<nl])
                consumed = nl + 1
                scanned = consumed
                compact()
                return line
            }
            scanned = buffer.count
            if sawEOF {
                guard consumed < buffer.count else { return nil }
                let line = Array(buffer[consumed...])
                consumed = buffer.count
                scanned = consumed
                compact()
                return line
            }
            try fill(blocking: true)
        }
    }

    private func compact() {
        if consumed == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            consumed = 0
            scanned = 0
        } else if consumed >= 1 << 16, consumed * 2 >= buffer.count {
            buffer.removeSubrange(0..<consumed)
            scanned -= consumed
            consumed = 0
        }
    }

    private func checkOpen() throws {
        if fd < 0 { throw BerthClientError.io("the connection to berthd is closed") }
    }

    /// Reads what is available (or blocks for it) into `buffer`; sets `sawEOF` at end of stream.
    private func fill(blocking: Bool) throws {
        try checkOpen()
        while true {
            let n = chunk.withUnsafeMutableBytes { raw in
                recv(fd, raw.baseAddress, raw.count, blocking ? 0 : Int32(MSG_DONTWAIT))
            }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                return
            }
            if n == 0 {
                sawEOF = true
                return
            }
            let e = errno
            if e == EINTR { continue }
            if !blocking && (e == EAGAIN || e == EWOULDBLOCK) { return }
            if e == ECONNRESET {
                sawEOF = true
                return
            }
            throw BerthClientError.io("reading from berthd failed: \(errnoDescription(e))")
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        try checkOpen()
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc_send(fd, raw.baseAddress! + offset, raw.count - offset)
            }
            if n >= 0 {
                offset += n
                continue
            }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK {
                try waitWritable()
                continue
            }
            if e == EPIPE || e == ECONNRESET {
                throw BerthClientError.io("berthd closed the connection")
            }
            throw BerthClientError.io("writing to berthd failed: \(errnoDescription(e))")
        }
    }

    /// Waits until the socket can take more bytes, reading whatever the daemon sends meanwhile so
    /// that neither side blocks on a full buffer.
    private func waitWritable() throws {
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if !sawEOF { p.events |= Int16(POLLIN) }
            let r = poll(&p, 1, -1)
            if r < 0 {
                let e = errno
                if e == EINTR { continue }
                throw BerthClientError.io("poll failed: \(errnoDescription(e))")
            }
            if p.revents & Int16(POLLIN) != 0, !sawEOF {
                try fill(blocking: false)
            }
            if p.revents & Int16(POLLOUT | POLLHUP | POLLERR) != 0 { return }
        }
    }

    // MARK: - Socket

    private static func connectUnix(path: String) throws(BerthClientError) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        if abstract { pathBytes[0] = 0 }
        guard !pathBytes.isEmpty, pathBytes.count < unixPathCapacity, !pathBytes.dropFirst().contains(0) else {
            throw .connect(path: path, errno: pathBytes.isEmpty ? ENOENT : ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let length = socklen_t(
            MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathBytes.count + (abstract ? 0 : 1))

        let fd = Glibc_socket()
        guard fd >= 0 else { throw .connect(path: path, errno: errno) }
        while true {
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
            }
            if rc == 0 { break }
            let e = errno
            if e == EINTR { continue }
            _ = Glibc_close(fd)
            throw .connect(path: path, errno: e)
        }
        #if canImport(Darwin)
            var one: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        return fd
    }
}

// Platform shims: names that clash with BerthConnection's methods, and constants whose types differ.

@inline(__always)
private func Glibc_close(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
        return Glibc.close(fd)
    #elseif canImport(Musl)
        return Musl.close(fd)
    #else
        return Darwin.close(fd)
    #endif
}

@inline(__always)
private func Glibc_send(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Darwin)
        return send(fd, p, n, MSG_DONTWAIT)
    #else
        return send(fd, p, n, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
    #endif
}

@inline(__always)
private func Glibc_socket() -> Int32 {
    #if os(Linux)
        return socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    #else
        return socket(AF_UNIX, SOCK_STREAM, 0)
    #endif
}
