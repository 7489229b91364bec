import BerthCore
import BerthJSON
import BerthRPC
import BerthStore
import BerthTestSupport
import GRDB
import Logging
import Synchronization
import Testing

@testable import BerthService

/// Group commit: concurrent changes share transactions, yet every acknowledged change is on disk,
/// in order, and a failed commit leaves nothing behind in memory.
@Suite struct GroupCommitTests {
    static func leaseParams(hour: Int64, hosts: Int64 = 1, name: String = "l", key: String? = nil) -> JSON {
        var p: [String: JSON] = [
            "name": .string(name), "project_id": "p", "start": .string((epoch + 3600 * hour).rfc3339),
            "end": .string((epoch + 3600 * (hour + 1)).rfc3339),
            "reservations": [["kind": "host", "count": .int(hosts)]],
        ]
        if let key { p["idempotency_key"] = .string(key) }
        return .object(p)
    }

    static func addHosts(_ s: Scheduler, _ n: Int) async throws {
        for i in 0..<n {
            _ = try await s.call(.hostCreate, ["name": .string("h\(i)"), "vcpus": 8, "memory_mb": 1024, "disk_gb": 10])
        }
    }

    /// Results of `count` concurrent calls (the scheduler sees them all at once).
    static func concurrently(_ count: Int, _ s: Scheduler, _ params: @escaping @Sendable (Int) -> JSON) async
        -> [Result<JSON, BerthError>]
    {
        await withTaskGroup(of: (Int, Result<JSON, BerthError>).self) { group in
            for i in 0..<count {
                group.addTask {
                    do throws(BerthError) {
                        return (i, .success(try await s.call(.leaseCreate, params(i))))
                    } catch {
                        return (i, .failure(error))
                    }
                }
            }
            var out = [Result<JSON, BerthError>?](repeating: nil, count: count)
            for await (i, r) in group { out[i] = r }
            return out.map { $0! }
        }
    }

    @Test func concurrentCreatesAreAllDurableAndEventsInOrder() async throws {
        let dir = temporaryDirectory()
        let published = Mutex<[Int64]>([])
        let broadcaster = EventBroadcaster()
        _ = broadcaster.subscribe(
            connection: RPCConnectionID(rawValue: 1),
            sink: RPCNotificationSink { _, params in
                published.withLock { $0.append(params["seq"]?.intValue ?? -1) }
                return true
            }, patterns: [])
        let store = try BerthStore(directory: dir)
        let s = try Scheduler(
            store: store, clock: BerthClock(mode: .manual, initial: epoch), broadcaster: broadcaster,
            logger: Logger(label: "t"))
        try await Self.addHosts(s, 4)
        let n = 64
        let results = await Self.concurrently(n, s) { Self.leaseParams(hour: Int64($0 / 4) + 1, name: "c\($0)") }
        let ids = try results.map { try #require(try $0.get()["id"]?.stringValue) }
        #expect(Set(ids).count == n)

        // On disk, in one contiguous sequence, published in that same order.
        let events = try store.events(afterSeq: 0, limit: 1000, types: [])
        #expect(events.map(\.seq) == Array(1...Int64(4 + n)))
        #expect(published.withLock { $0 } == events.map(\.seq))
        // A new scheduler on the same state (a restart) holds every acknowledged lease.
        let restarted = try Scheduler(
            store: BerthStore(directory: dir), clock: BerthClock(mode: .manual, initial: epoch),
            logger: Logger(label: "t"))
        for (id, r) in zip(ids, results) {
            #expect(try await restarted.call(.leaseGet, ["id": .string(id)]) == r.get())
        }
        #expect(await restarted.leaseCount == n)
    }

    @Test func concurrentRetriesWithOneIdempotencyKeyActOnce() async throws {
        let s = try makeScheduler(temporaryDirectory())
        try await Self.addHosts(s, 2)
        let results = await Self.concurrently(16, s) { _ in Self.leaseParams(hour: 2, key: "same") }
        let replies = try results.map { try $0.get() }
        #expect(Set(replies.map { $0["id"] }).count == 1)
        #expect(await s.leaseCount == 1)
    }

    @Test func backOffGrowsOnlyAfterRepeatedFailures() {
        #expect(GroupCommit.backoff(afterFailures: 0) == .zero)
        #expect(GroupCommit.backoff(afterFailures: 1) == .zero)
        #expect(GroupCommit.backoff(afterFailures: 2) == .milliseconds(100))
        #expect(GroupCommit.backoff(afterFailures: 3) == .milliseconds(200))
        #expect(GroupCommit.backoff(afterFailures: 7) == .milliseconds(3200))
        #expect(GroupCommit.backoff(afterFailures: 8) == .seconds(5))
        #expect(GroupCommit.backoff(afterFailures: 1000) == .seconds(5))
    }

    /// During a back-off a write is refused before it is planned: memory is not touched, no commit
    /// is tried, and once a commit succeeds the fault is gone.
    @Test func lastingFaultRefusesWritesWithoutTryingThem() async throws {
        let dir = temporaryDirectory()
        let s = try makeScheduler(dir)
        try await Self.addHosts(s, 1)
        var config = Configuration()
        config.allowsUnsafeTransactions = true
        let other = try DatabaseQueue(path: dir + "/berth.sqlite", configuration: config)
        try await other.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }
        // Failed commits in a row start a back-off that doubles each time: within a few writes one
        // is refused before it is tried (however slow this machine is between two calls).
        var refusedFast: BerthError? = nil
        for k: Int64 in 0..<12 where refusedFast == nil {
            do {
                _ = try await s.call(.leaseCreate, Self.leaseParams(hour: 5 + k, name: "lost\(k)"))
                Issue.record("a write was acknowledged while the database was locked")
            } catch {
                #expect(error.code == .unavailable)
                if error.message.contains("writes are retried in") { refusedFast = error }
            }
        }
        #expect(refusedFast?.data["storage_fault"] == "busy")
        #expect(s.commits.storageFault != nil)
        #expect(s.commits.isDrained)
        try await other.writeWithoutTransaction { try $0.execute(sql: "ROLLBACK") }
        s.commits.endBackOff()
        _ = try await s.call(.leaseCreate, Self.leaseParams(hour: 9, name: "after"))
        #expect(s.commits.storageFault == nil)
    }

    @Test func failedCommitFailsItsRequestsAndLeavesNoPhantomState() async throws {
        let dir = temporaryDirectory()
        let s = try makeScheduler(dir)
        try await Self.addHosts(s, 2)
        let kept = try await s.call(.leaseCreate, Self.leaseParams(hour: 1, hosts: 2, name: "kept"))

        // Another connection holds SQLite's write lock: the scheduler's commits fail (SQLITE_BUSY).
        var config = Configuration()
        config.allowsUnsafeTransactions = true  // the transaction spans several accesses on purpose
        let other = try DatabaseQueue(path: dir + "/berth.sqlite", configuration: config)
        try await other.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }
        let failed = await Self.concurrently(8, s) { Self.leaseParams(hour: 5, name: "lost\($0)") }
        for r in failed {
            guard case .failure(let e) = r else {
                Issue.record("a create was acknowledged while the database was locked: \(r)")
                continue
            }
            #expect(e.code == .unavailable)
        }
        // Memory was rebuilt from the store: none of the failed leases is visible, reads still work.
        let listed = try await s.call(.leaseList, [:])["items"]?.arrayValue ?? []
        #expect(listed.map { $0["name"] } == ["kept"])
        #expect(try await s.call(.leaseGet, ["id": kept["id"]!]) == kept)
        #expect(s.commits.storageFault?.data["storage_fault"] == "busy")
        try await other.writeWithoutTransaction { try $0.execute(sql: "ROLLBACK") }
        // Several commits failed in a row: writes wait for a back-off to end; end it now.
        s.commits.endBackOff()

        // The capacity the failed creates took in memory is free again, and event numbers go on
        // from what is on disk.
        let a = try await s.call(.leaseCreate, Self.leaseParams(hour: 5, hosts: 2, name: "after"))
        #expect(a["name"] == "after")
        let store = try BerthStore(directory: dir)
        let events = try store.events(afterSeq: 0, limit: 100, types: [])
        #expect(events.map(\.seq) == Array(1...Int64(events.count)))
        #expect(events.filter { $0.type == "lease.created" }.count == 2)
        let restarted = try Scheduler(
            store: store, clock: BerthClock(mode: .manual, initial: epoch), logger: Logger(label: "t"))
        #expect(await restarted.leaseCount == 2)
    }
}
