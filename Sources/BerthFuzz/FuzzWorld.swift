import BerthCore
import BerthJSON
import BerthRPC
import BerthService
import BerthStore
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// `berthd`'s request path in one process, without the socket: the real `JSONRPCDispatcher` over the
/// real `BerthMethods` and `Scheduler` on a SQLite store in a temporary directory, with a manual
/// clock, built as `BerthdMain` builds them. The caller is root (`admin`), so every method's
/// parameter validation is reachable.
///
/// A small inventory (three compute hosts, one GPU host), a credit grant, one lease and one
/// preemptible are made up front; `@lease` and `@preemptible` in an input stand for their ids, so
/// the fuzzer reaches `lease.update`/`delete` and the preemptible methods with ids that exist.
public final class FuzzWorld: Sendable {
    /// The manual clock's start, 2030-01-01T00:00:00Z (as the integration tests use).
    public static let epoch = Timestamp(seconds: 1_893_456_000)
    public static let maxBatchSize = 1000

    public let directory: String
    public let dispatcher: JSONRPCDispatcher
    let methods: BerthMethods
    public let leaseID: String
    public let preemptibleID: String
    let store: BerthStore

    /// Builds a fresh world in a new directory under `parent` (tmpfs, when there is one, keeps fsync cheap).
    public init(parent: String = FuzzWorld.defaultParent) async throws(BerthError) {
        directory = try FuzzWorld.makeTemporaryDirectory(parent: parent)
        store = try BerthStore(directory: directory)
        let logger = Logger(label: "berth-fuzz") { _ in SwiftLogNoOpLogHandler() }
        let broadcaster = EventBroadcaster()
        let scheduler = try Scheduler(
            store: store, clock: BerthClock(mode: .manual, initial: FuzzWorld.epoch), broadcaster: broadcaster,
            logger: logger)
        methods = BerthMethods(
            scheduler: scheduler, store: store, broadcaster: broadcaster, roles: RoleMap(), version: "fuzz")
        dispatcher = JSONRPCDispatcher(handler: methods, maxBatchSize: FuzzWorld.maxBatchSize)

        for i in 1...3 {
            _ = try await scheduler.call(
                .hostCreate,
                [
                    "name": .string("compute-\(i)"), "vcpus": 16, "memory_mb": 65536, "disk_gb": 500,
                    "properties": ["rack": .string(i == 3 ? "r2" : "r1"), "ib": .string(i == 2 ? "true" : "false")],
                ])
        }
        _ = try await scheduler.call(
            .hostCreate,
            [
                "name": "gpu-1", "vcpus": 64, "memory_mb": 524_288, "disk_gb": 2000,
                "gpus": [["model": "A100-40GB"], ["model": "A100-40GB"]], "properties": ["rack": "r3"],
            ])
        _ = try await scheduler.call(
            .creditsGrant, ["project_id": "p1", "resource_class": "host_hours", "amount": 1000])
        let lease = try await scheduler.call(
            .leaseCreate,
            [
                "name": "seed", "project_id": "p1", "start": .string((FuzzWorld.epoch + 3600).rfc3339),
                "end": .string((FuzzWorld.epoch + 4 * 3600).rfc3339), "reservations": [["kind": "host", "count": 1]],
            ])
        let preemptible = try await scheduler.call(
            .preemptibleCreate, ["project_id": "p1", "vcpus": 2, "memory_mb": 2048, "disk_gb": 10])
        leaseID = lease["id"]?.stringValue ?? ""
        preemptibleID = preemptible["id"]?.stringValue ?? ""
    }

    /// Removes the world's directory (the store's files). Call once no request is running.
    public func remove() {
        for name in ["berth.sqlite", "berth.sqlite-wal", "berth.sqlite-shm"] { unlink(directory + "/" + name) }
        rmdir(directory)
    }

    /// The caller every input comes from: root, so `admin`.
    static let rootPeer = PeerCredentials(pid: 1, uid: 0, gid: 0)

    /// One request line through the dispatcher, as a connection of its own (closed afterwards, so
    /// `events.subscribe` leaves nothing behind). Returns the reply line, or nil for none.
    public func process(_ line: [UInt8], connection: UInt64) async -> [UInt8]? {
        let id = RPCConnectionID(rawValue: connection)
        let context = RPCContext(peer: FuzzWorld.rootPeer, connection: id, notifications: .closed)
        let reply = await dispatcher.process(line: line, context: context)
        await methods.connectionClosed(id)
        return reply
    }

    /// One fuzz input end to end: ids substituted, processed, and the reply judged by `ReplyOracle`.
    /// Returns what is wrong with the reply, or nil.
    public func check(_ input: [UInt8], connection: UInt64) async -> String? {
        await checkAndReply(input, connection: connection).problem
    }

    /// `check`, also returning the reply (for the fuzzer's tally of outcomes).
    public func checkAndReply(_ input: [UInt8], connection: UInt64) async -> (problem: String?, reply: [UInt8]?) {
        let line = substitutingIDs(input)
        let reply = await process(line, connection: connection)
        return (ReplyOracle.problem(request: line, reply: reply, maxBatchSize: FuzzWorld.maxBatchSize), reply)
    }

    /// `@lease` and `@preemptible` replaced by the ids of this world's lease and preemptible.
    public func substitutingIDs(_ input: [UInt8]) -> [UInt8] {
        var out = FuzzWorld.replace(Array("@preemptible".utf8), with: Array(preemptibleID.utf8), in: input)
        out = FuzzWorld.replace(Array("@lease".utf8), with: Array(leaseID.utf8), in: out)
        return out
    }

    static func replace(_ needle: [UInt8], with replacement: [UInt8], in haystack: [UInt8]) -> [UInt8] {
        guard haystack.count >= needle.count, let first = needle.first else { return haystack }
        var out: [UInt8] = []
        var i = 0
        var changed = false
        while i < haystack.count {
            if haystack[i] == first, i + needle.count <= haystack.count,
                haystack[i..<(i + needle.count)].elementsEqual(needle)
            {
                out.append(contentsOf: replacement)
                i += needle.count
                changed = true
            } else {
                out.append(haystack[i])
                i += 1
            }
        }
        return changed ? out : haystack
    }

    public static var defaultParent: String {
        var st = stat()
        if stat("/dev/shm", &st) == 0, access("/dev/shm", W_OK) == 0 { return "/dev/shm" }
        return getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    }

    static func makeTemporaryDirectory(parent: String) throws(BerthError) -> String {
        var template = Array((parent + "/berth-fuzz-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buf in
            mkdtemp(buf.baseAddress!).map { String(cString: $0) }
        }
        guard let made else { throw BerthError(.unavailable, "cannot create a temporary directory in \(parent)") }
        return made
    }
}
