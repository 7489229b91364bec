import BerthCore
import BerthJSON
import BerthTestSupport
import GRDB
import Testing

@testable import BerthStore

/// `loadSnapshot` decodes documents in batches on several threads: results must come back complete,
/// in (created_at, id) order whatever the rows' order, and a damaged document must still be named.
@Suite struct SnapshotLoadTests {
    static let base = TestEpoch.roundSeconds

    /// More leases than fit in two decoding batches, committed in an order unrelated to their
    /// creation order, with many equal creation times (ties go by id).
    static func leases(_ n: Int) -> [Lease] {
        var rng = SplitMix64(seed: 0x5A_F5)
        return (0..<n).map { k in
            let created = base + 60 * Int64.random(in: 0..<20, using: &rng)
            let start = base + 3600 * Int64(k % 50)
            var l = Lease(
                id: UUIDString.random(), name: "lease \"\(k)\" é", projectID: "p\(k % 3)", userID: nil, start: start,
                end: start + 3600,
                beforeEndSeconds: k % 2 == 0 ? 600 : nil, status: .pending,
                reservations: [
                    Reservation(
                        id: UUIDString.random(), request: ReservationRequest(hosts: 2), status: .pending,
                        allocations: [Allocation(host: "h\(k % 7)"), Allocation(host: "h\(k % 7 + 7)")])
                ], createdAt: created)
            l.cost = ["host_hours": .int(Int64(k))]
            return l
        }
    }

    @Test func manyLeasesComeBackCompleteInCreationOrder() throws {
        let dir = temporaryDirectory(prefix: "berth-store")
        let store = try BerthStore(directory: dir)
        let all = Self.leases(3 * DocumentDecoder.batchRows + 17)
        // Several transactions, so rowids follow this (shuffled) order, not creation order.
        var rng = SplitMix64(seed: 7)
        let shuffled = all.shuffled(using: &rng)
        for chunk in stride(from: 0, to: shuffled.count, by: 200) {
            var m = BerthStore.Mutation()
            m.leases = Array(shuffled[chunk..<min(chunk + 200, shuffled.count)])
            try store.commit(m)
        }
        let snap = try BerthStore(directory: dir).loadSnapshot()
        let expected = all.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        #expect(snap.leases.count == all.count)
        #expect(snap.leases.map(\.id) == expected.map(\.id))
        let identical = snap.leases == expected  // (not inside #expect: it would print 1,500 leases)
        #expect(identical)
    }

    @Test func aDamagedLeaseIsNamed() throws {
        let dir = temporaryDirectory(prefix: "berth-store")
        let store = try BerthStore(directory: dir)
        let all = Self.leases(2 * DocumentDecoder.batchRows + 3)
        var m = BerthStore.Mutation()
        m.leases = all
        try store.commit(m)
        let victim = all[DocumentDecoder.batchRows + 5].id
        let queue = try DatabaseQueue(path: store.path)
        try queue.write { db in
            try db.execute(sql: "UPDATE lease SET body = ? WHERE id = ?", arguments: ["{\"id\": 1", victim])
        }
        do {
            _ = try BerthStore(directory: dir).loadSnapshot()
            Issue.record("a damaged lease was loaded")
        } catch {
            #expect(error.message == "stored lease \(victim) is unreadable")
        }
    }

    @Test func sortByCreationMatchesASort() {
        var rng = SplitMix64(seed: 0x50_27)
        for n in [0, 1, 2, 3, 10, 200] {
            let items = (0..<n).map { k in
                (
                    Timestamp(seconds: Int64.random(in: 0..<4, using: &rng)),
                    "i\(Int.random(in: 0..<50, using: &rng))-\(k)"
                )
            }
            var sorted = items
            DocumentDecoder.sortByCreation(&sorted) { $0 }
            #expect(sorted.map(\.1) == items.sorted { $0 < $1 }.map(\.1))
            var again = sorted
            DocumentDecoder.sortByCreation(&again) { $0 }  // already sorted: unchanged
            #expect(again.map(\.1) == sorted.map(\.1))
        }
    }
}
