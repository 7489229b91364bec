import BerthJSON
import BerthRPC
import BerthTestSupport
import Foundation
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Blocking POSIX client

struct ClientError: Error, CustomStringConvertible {
    var description: String
}

/// A plain blocking Unix-socket client, as a shell tool or a Slurm hook would be. Used only from
/// `onThread`, never on the cooperative pool.
final class LineClient: @unchecked Sendable {
    let fd: Int32
    private var pending: [UInt8] = []

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "socket: \(String(cString: strerror(errno)))") }
        let rc = try UnixSocketAddress(path: path).connect(fd)
        // No close here on failure: a class whose stored properties are all set runs `deinit` when its
        // init throws, and a second close could hit a descriptor number NIO has reused meanwhile.
        guard rc == 0 else { throw ClientError(description: "connect \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Writes all bytes; returns false if the server closed the connection first.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    @discardableResult
    func write(_ text: String) -> Bool { write(Array(text.utf8)) }

    /// Sends one line (a newline is appended).
    @discardableResult
    func send(_ line: String) -> Bool { write(line + "\n") }

    /// The next line without its newline; nil on end of stream or a connection error.
    func readLine() -> String? {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                return String(decoding: line, as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return nil }
            pending.append(contentsOf: chunk[..<n])
        }
    }

    /// The next line, parsed.
    func readJSON() throws -> JSON {
        guard let line = readLine() else { throw ClientError(description: "connection closed") }
        return try JSONParser.parse(line)
    }

    /// True when the server has closed the connection (EOF or reset) with nothing more to read.
    func readsEndOfStream() -> Bool {
        readLine() == nil
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}

/// Runs blocking work on its own thread, so the cooperative pool (two threads on this machine) stays
/// free for the server under test.
@discardableResult
func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}

// MARK: - Synchronisation helpers (no sleeps)

/// Lets a test hold requests inside the handler and know when they have arrived.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    private let arrivals: AsyncStream<Void>
    private let arrivalsContinuation: AsyncStream<Void>.Continuation

    init() {
        (arrivals, arrivalsContinuation) = AsyncStream<Void>.makeStream()
    }

    /// Called by the handler: announces the arrival, then waits until the gate opens.
    func pass() async {
        arrivalsContinuation.yield()
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Waits until `count` more requests have reached the gate.
    func waitForArrivals(_ count: Int = 1) async {
        var iterator = arrivals.makeAsyncIterator()
        for _ in 0..<count { _ = await iterator.next() }
    }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Releases all callers once `count` of them have arrived: proves they were in flight together.
final class Barrier: Sendable {
    private let count: Int
    private let state = Mutex<(arrived: Int, waiters: [CheckedContinuation<Void, Never>])>((0, []))

    init(count: Int) { self.count = count }

    func arrive() async {
        await withCheckedContinuation { continuation in
            let release: [CheckedContinuation<Void, Never>] = state.withLock { state in
                state.arrived += 1
                state.waiters.append(continuation)
                guard state.arrived >= count else { return [] }
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in release { waiter.resume() }
        }
    }
}

// MARK: - Test handler

final class SinkRegistry: Sendable {
    private let sinks = Mutex<[RPCConnectionID: RPCNotificationSink]>([:])

    func withLock<R>(_ body: (inout [RPCConnectionID: RPCNotificationSink]) -> R) -> R {
        sinks.withLock { body(&$0) }
    }
}

struct TestHandler: RPCHandler {
    var gate = Gate()
    var barrier = Barrier(count: 1)
    var refuseEveryone = false
    /// Connection ids as they close.
    let closedConnections: AsyncStream<RPCConnectionID>
    private let closedContinuation: AsyncStream<RPCConnectionID>.Continuation
    /// Sinks saved by "subscribe", by connection.
    let sinks = SinkRegistry()

    init(gate: Gate = Gate(), barrier: Barrier = Barrier(count: 1), refuseEveryone: Bool = false) {
        self.gate = gate
        self.barrier = barrier
        self.refuseEveryone = refuseEveryone
        (closedConnections, closedContinuation) = AsyncStream<RPCConnectionID>.makeStream()
    }

    func admit(_ peer: PeerCredentials) -> RPCError? {
        refuseEveryone ? RPCError(code: -32004, message: "forbidden", data: ["reason": "forbidden"]) : nil
    }

    func handle(method: String, params: JSON?, context: RPCContext) async throws(RPCError) -> JSON {
        switch method {
        case "echo":
            return params ?? .null
        case "fail":
            throw RPCError(code: -32005, message: "conflict", data: ["reason": "conflict"])
        case "slow":
            await gate.pass()
            return "done"
        case "barrier":
            await barrier.arrive()
            return "released"
        case "notify":
            let sent = context.notifications.send(method: "event", params: params ?? [:])
            return .bool(sent)
        case "flood":
            // Pushes notifications until the sink refuses; returns how many were accepted.
            let count = Int(params?.arrayValue?.first?.intValue ?? 0)
            let payload = JSON.string(String(repeating: "z", count: Int(params?.arrayValue?.last?.intValue ?? 0)))
            var sent = 0
            while sent < count, context.notifications.send(method: "flood", params: [payload]) { sent += 1 }
            await gate.pass()
            return .int(Int64(sent))
        case "subscribe":
            sinks.withLock { $0[context.connection] = context.notifications }
            return .int(Int64(context.connection.rawValue))
        case "whoami":
            return [
                "pid": .int(Int64(context.peer.pid)),
                "uid": .int(Int64(context.peer.uid)),
                "gid": .int(Int64(context.peer.gid)),
            ]
        case "bad_params":
            throw .invalidParams([(path: "reservations[0].count", message: "must be positive")])
        default:
            throw .methodNotFound(method)
        }
    }

    func connectionClosed(_ connection: RPCConnectionID) async {
        closedContinuation.yield(connection)
    }
}

// MARK: - Server fixture

let quietLogger = Logger(label: "berth.rpc.test") { _ in SwiftLogNoOpLogHandler() }

struct RunningServer: Sendable {
    let server: UnixSocketRPCServer
    let path: String
    let task: Task<Void, any Error>

    func connect() async throws -> LineClient {
        let path = self.path
        return try await onThread { try LineClient(path: path) }
    }

    func stop() async throws {
        server.beginGracefulShutdown()
        try await task.value
    }
}

func startServer(
    handler: TestHandler = TestHandler(),
    maxLineLength: Int = 1 << 20,
    limits: RPCConnectionLimits = RPCConnectionLimits(),
    listen: UnixSocketRPCServer.Listen? = nil
) async throws -> RunningServer {
    let path = UnixSocketAddress.temporaryPath(prefix: "berth-rpc")
    let server = UnixSocketRPCServer(
        listen: listen ?? .path(path),
        handler: handler,
        logger: quietLogger,
        maxLineLength: maxLineLength,
        limits: limits
    )
    try await server.bind()
    let task = Task { try await server.run() }
    return RunningServer(server: server, path: server.socketPath ?? path, task: task)
}

/// Starts a server, runs `body`, and always shuts the server down gracefully.
func withServer<R: Sendable>(
    handler: TestHandler = TestHandler(),
    maxLineLength: Int = 1 << 20,
    limits: RPCConnectionLimits = RPCConnectionLimits(),
    _ body: (RunningServer) async throws -> R
) async throws -> R {
    let running = try await startServer(handler: handler, maxLineLength: maxLineLength, limits: limits)
    do {
        let result = try await body(running)
        try await running.stop()
        return result
    } catch {
        try? await running.stop()
        throw error
    }
}

/// A POSIX stream socket bound at `path` (not listening), as left behind by a crashed daemon or
/// prepared by systemd before `listen`.
func boundSocket(path: String) throws -> Int32 {
    let address = try UnixSocketAddress(path: path)
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard address.bind(fd) == 0 else {
        let error = String(cString: strerror(errno))
        close(fd)
        throw ClientError(description: "bind \(path): \(error)")
    }
    return fd
}

// MARK: - JSON helpers

func request(_ method: String, id: JSON = 1, params: JSON? = nil) -> String {
    var o: [String: JSON] = ["jsonrpc": "2.0", "method": .string(method), "id": id]
    if let params { o["params"] = params }
    return JSON.object(o).serialized()
}

/// A request without an id: no reply is expected.
func notification(_ method: String, params: JSON? = nil) -> String {
    var o: [String: JSON] = ["jsonrpc": "2.0", "method": .string(method)]
    if let params { o["params"] = params }
    return JSON.object(o).serialized()
}

extension JSON {
    var errorCode: Int64? { self["error"]?["code"]?.intValue }
    var errorReason: String? { self["error"]?["data"]?["reason"]?.stringValue }
}
