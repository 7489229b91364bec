import BerthCore
import BerthJSON
import BerthStore
import BerthTestSupport
import Logging
import Testing

@testable import BerthService

@Suite struct LifecycleTests {
    func setUp() async throws -> (Scheduler, String) {
        let dir = temporaryDirectory()
        let s = try makeScheduler(dir)
        _ = try await s.call(.hostCreate, ["name": "h1", "vcpus": 8, "memory_mb": 1024, "disk_gb": 10])
        return (s, dir)
    }

    func createLease(_ s: Scheduler, start: Int64, end: Int64, beforeEnd: Int64? = nil) async throws -> String {
        var p: [String: JSON] = [
            "name": "l", "project_id": "p", "start": .string((epoch + start).rfc3339),
            "end": .string((epoch + end).rfc3339),
            "reservations": [["kind": "host", "count": 1]],
        ]
        if let beforeEnd { p["before_end_s"] = .int(beforeEnd) }
        return try #require(try await s.call(.leaseCreate, .object(p))["id"]?.stringValue)
    }

    func eventTypes(_ store: BerthStore) throws -> [(String, Timestamp)] {
        try store.events(afterSeq: 0, limit: 1000, types: ["lease.*"]).map { ($0.type, $0.at) }
    }

    @Test func firesStartBeforeEndAndEndAtTheirExactTimes() async throws {
        let (s, dir) = try await setUp()
        let id = try await createLease(s, start: 3600, end: 7200, beforeEnd: 600)
        _ = try await s.call(.clockAdvance, ["seconds": 10_000])
        let lease = try await s.call(.leaseGet, ["id": .string(id)])
        #expect(lease["status"] == "ended")
        let events = try eventTypes(try BerthStore(directory: dir))
        #expect(events.map(\.0) == ["lease.created", "lease.started", "lease.before_end", "lease.ended"])
        #expect(events.map(\.1) == [epoch, epoch + 3600, epoch + 6600, epoch + 7200])
        let actions = try BerthStore(directory: dir).actions(status: nil, leaseID: id, afterSeq: 0, limit: 10).map(
            \.action.kind)
        #expect(actions == ["lease.start", "lease.end"])
    }

    @Test func catchesUpMissedEventsAfterRestartInTimeOrder() async throws {
        let (s, dir) = try await setUp()
        let a = try await createLease(s, start: 100, end: 200)
        let b = try await createLease(s, start: 300, end: 400)
        // "Crash": a new scheduler on the same state, its clock well past both leases.
        let store = try BerthStore(directory: dir)
        let restarted = try Scheduler(
            store: store, clock: BerthClock(mode: .manual, initial: epoch), logger: Logger(label: "t"))
        restarted.clock.set(epoch + 1000)
        await restarted.processDue()
        #expect(try await restarted.call(.leaseGet, ["id": .string(a)])["status"] == "ended")
        #expect(try await restarted.call(.leaseGet, ["id": .string(b)])["status"] == "ended")
        let events = try eventTypes(store).filter { $0.0 != "lease.created" }
        #expect(events.map(\.0) == ["lease.started", "lease.ended", "lease.started", "lease.ended"])
        #expect(events.map(\.1) == [epoch + 100, epoch + 200, epoch + 300, epoch + 400])
    }

    @Test func idempotencyKeyActsOnce() async throws {
        let (s, _) = try await setUp()
        let p: JSON = [
            "name": "l", "project_id": "p", "start": .string((epoch + 10).rfc3339),
            "end": .string((epoch + 20).rfc3339),
            "reservations": [["kind": "host", "count": 1]], "idempotency_key": "k1",
        ]
        let first = try await s.call(.leaseCreate, p)
        let second = try await s.call(.leaseCreate, p)
        #expect(first == second)
        #expect(await s.leaseCount == 1)
        guard case .object(var other) = p else { return }
        other["name"] = "different"
        await #expect(throws: BerthError.self) { try await s.call(.leaseCreate, .object(other)) }
    }

    @Test func deletingAnActiveLeaseEndsItNowAndFreesTheHost() async throws {
        let (s, _) = try await setUp()
        let id = try await createLease(s, start: 0, end: 7200)
        #expect(try await s.call(.leaseGet, ["id": .string(id)])["status"] == "active")
        _ = try await s.call(.clockAdvance, ["seconds": 600])
        _ = try await s.call(.leaseDelete, ["id": .string(id)])
        // The host is free again from now on.
        _ = try await createLease(s, start: 600, end: 7200)
    }
}
