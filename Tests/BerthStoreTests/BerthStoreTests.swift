import BerthCore
import BerthJSON
import BerthTestSupport
import Testing

@testable import BerthStore

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct BerthStoreTests {
    @Test func opensInWALModeAndRoundTripsAMutation() throws {
        let dir = temporaryDirectory(prefix: "berth-store")
        let store = try BerthStore(directory: dir)
        let t = TestEpoch.roundSeconds
        var m = BerthStore.Mutation()
        m.hosts = [
            Host(name: "h1", vcpus: 4, memoryMB: 100, diskGB: 1, properties: ["rack": "r1"], createdAt: t, updatedAt: t)
        ]
        var lease = Lease(
            id: UUIDString.random(), name: "x", projectID: "p", userID: "u", start: t, end: t + 60,
            beforeEndSeconds: 10,
            status: .pending,
            reservations: [
                Reservation(
                    id: UUIDString.random(), request: ReservationRequest(hostsMin: 1, max: 2), status: .pending,
                    allocations: [Allocation(host: "h1")])
            ],
            createdAt: t)
        lease.beforeEndFired = true
        m.leases = [lease]
        m.events = [LifecycleEvent(seq: 1, type: "lease.created", at: t, leaseID: lease.id)]
        m.meta = ["manual_clock": "42"]
        try store.commit(m)

        // A second, independent connection sees exactly what was committed.
        let snap = try BerthStore(directory: dir).loadSnapshot()
        #expect(snap.hosts == m.hosts)
        #expect(snap.leases == [lease])
        #expect(snap.lastEventSeq == 1)
        #expect(snap.meta["manual_clock"] == "42")
    }

    /// GRDB sets a pool's writer to `synchronous = NORMAL` (no fsync per WAL commit); the store
    /// must put FULL back, or a power cut could lose acknowledged writes.
    @Test func everyCommitIsSynced() throws {
        let store = try BerthStore(directory: temporaryDirectory(prefix: "berth-store"))
        #expect(try store.writerSynchronousMode() == 2)
        try store.commit(BerthStore.Mutation())
        #expect(try store.writerSynchronousMode() == 2)
    }

    @Test func refusesWhatIsNotABerthDatabaseAndLeavesItAlone() throws {
        let dir = temporaryDirectory(prefix: "berth-store")
        let path = dir + "/berth.sqlite"
        let garbage =
            Array("this is not a database, just text that happens to be long enough...".utf8)
            + [UInt8](repeating: 7, count: 200)
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        #expect(write(fd, garbage, garbage.count) == garbage.count)
        close(fd)
        #expect {
            _ = try BerthStore(directory: dir)
        } throws: { error in
            guard let e = error as? BerthError else { return false }
            return e.code == .unavailable && e.message.contains("is not a SQLite database")
                && e.data["storage_fault"] == "corrupt"
        }
        var st = stat()
        #expect(stat(path, &st) == 0 && Int(st.st_size) == garbage.count)
        #expect(access(path + "-wal", F_OK) != 0)
    }

    @Test func filtersEventsByPattern() throws {
        let store = try BerthStore(directory: temporaryDirectory(prefix: "berth-store"))
        var m = BerthStore.Mutation()
        let t = Timestamp(seconds: 0)
        m.events = [
            LifecycleEvent(seq: 1, type: "lease.created", at: t), LifecycleEvent(seq: 2, type: "host.down", at: t),
            LifecycleEvent(seq: 3, type: "lease.ended", at: t), LifecycleEvent(seq: 4, type: "leasex", at: t),
        ]
        try store.commit(m)
        #expect(try store.events(afterSeq: 0, limit: 10, types: ["lease.*"]).map(\.seq) == [1, 3])
        #expect(try store.events(afterSeq: 1, limit: 10, types: []).map(\.seq) == [2, 3, 4])
        #expect(try store.events(afterSeq: 0, limit: 2, types: ["host.down", "lease.ended"]).map(\.seq) == [2, 3])
    }

    @Test func aFailedTransactionLeavesNothingBehind() throws {
        let store = try BerthStore(directory: temporaryDirectory(prefix: "berth-store"))
        var m = BerthStore.Mutation()
        let t = Timestamp(seconds: 0)
        m.events = [LifecycleEvent(seq: 1, type: "a", at: t)]
        try store.commit(m)
        var bad = BerthStore.Mutation()
        bad.hosts = [Host(name: "h9", vcpus: 1, memoryMB: 1, diskGB: 1, createdAt: t, updatedAt: t)]
        bad.events = [LifecycleEvent(seq: 1, type: "duplicate seq", at: t)]  // violates the primary key
        #expect(throws: BerthError.self) { try store.commit(bad) }
        #expect(try store.loadSnapshot().hosts.isEmpty)
    }

    @Test func actionsOnOneTargetAreDeliveredInOrder() throws {
        let store = try BerthStore(directory: temporaryDirectory(prefix: "berth-store"))
        let t = TestEpoch.roundSeconds
        var start = OutboxAction(
            id: "a1", kind: "lease.start", target: "lease/L", leaseID: "L", createdAt: t, payload: [:])
        start.dueAt = t + 300  // backing off after a failure
        start.attempts = 1
        let end = OutboxAction(
            id: "a2", kind: "lease.end", target: "lease/L", leaseID: "L", createdAt: t + 10, payload: [:])
        let other = OutboxAction(
            id: "a3", kind: "lease.start", target: "lease/M", leaseID: "M", createdAt: t + 10, payload: [:])
        let hook = OutboxAction(
            id: "a4", kind: "hook.preemption", target: "lease/L", leaseID: nil, createdAt: t + 10, payload: [:])
        var m = BerthStore.Mutation()
        m.actions = [start, end, other, hook]
        try store.commit(m)
        // The end waits for the start; other targets and hook runs do not.
        #expect(try store.deliverableActions(now: t + 20, limit: 10, hooks: false).map(\.id) == ["a3"])
        #expect(try store.deliverableActions(now: t + 20, limit: 10, hooks: true).map(\.id) == ["a4"])
        #expect(try store.deliverableActions(now: t + 300, limit: 10, hooks: false).map(\.id) == ["a1", "a3"])
        start.status = .done
        m = BerthStore.Mutation()
        m.actions = [start]
        try store.commit(m)
        #expect(try store.deliverableActions(now: t + 20, limit: 10, hooks: false).map(\.id) == ["a2", "a3"])
    }
}
