import BerthCore
import BerthJSON
import BerthTestSupport
import Testing

@testable import BerthService

/// Reserved and used unit-hours accrue exactly over a lease's active time on the scheduler's clock,
/// whatever the steps the clock takes, and per-reservation figures exist only while active.
@Suite struct MetricsSnapshotTests {
    func setUp(usage: [String: Int64]) async throws -> (Scheduler, String) {
        let s = try makeScheduler(temporaryDirectory())
        for n in ["h1", "h2", "h3"] {
            _ = try await s.call(.hostCreate, ["name": .string(n), "vcpus": 8, "memory_mb": 1024, "disk_gb": 10])
        }
        await s.processDue()  // first usage tick: the accrual starts here
        let p: [String: JSON] = [
            "name": "l", "project_id": "p", "start": .string((epoch + 3600).rfc3339),
            "end": .string((epoch + 3 * 3600).rfc3339), "reservations": [["kind": "host", "count": 2]],
        ]
        let lease = try await s.call(.leaseCreate, .object(p))
        let rid = try #require(lease["reservations"]?.arrayValue?.first?["id"]?.stringValue)
        let source = usage.isEmpty ? [rid: 1] : usage
        await s.setUsageSource { source }
        return (s, rid)
    }

    func hours(_ snap: SchedulerMetricsSnapshot) -> (Double?, Double?) {
        (
            snap.reservedHours.first { $0.project == "p" && $0.kind == "host" }?.hours,
            snap.usedHours.first { $0.project == "p" && $0.kind == "host" }?.hours
        )
    }

    @Test func oneLongAdvanceCountsExactlyTheActiveTime() async throws {
        let (s, _) = try await setUp(usage: [:])
        _ = try await s.call(.clockAdvance, ["seconds": .int(10 * 3600)])
        let snap = await s.metricsSnapshot()
        let (reserved, used) = hours(snap)
        #expect(reserved == 4)  // 2 hosts × 2 h
        #expect(used == 2)  // 1 host × 2 h
        #expect(snap.reservations.isEmpty)
        #expect(snap.leasesByStatus["ended"] == 1)
        #expect(snap.capacity["hosts"]?.reserved == 0)
        #expect(snap.capacity["hosts"]?.total == 3)
    }

    @Test func manySmallStepsGiveTheSameTotals() async throws {
        let (s, rid) = try await setUp(usage: [:])
        for _ in 0..<20 {
            _ = try await s.call(.clockAdvance, ["seconds": 1800])
            let snap = await s.metricsSnapshot()
            if snap.now == epoch + 7200 {
                #expect(snap.reservations.map(\.reservationID) == [rid])
                #expect(snap.reservations.first?.reserved == 2)
                #expect(snap.reservations.first?.used == 1)
                #expect(snap.capacity["hosts"]?.reserved == 2)
                #expect(snap.capacity["vcpus"]?.reserved == 16)
            }
        }
        let (reserved, used) = hours(await s.metricsSnapshot())
        #expect(reserved == 4)
        #expect(used == 2)
    }

    @Test func usageIsCappedAtTheReservedUnits() async throws {
        let s = try makeScheduler(temporaryDirectory())
        _ = try await s.call(.hostCreate, ["name": "h1", "vcpus": 8, "memory_mb": 1024, "disk_gb": 10])
        await s.processDue()
        let p: [String: JSON] = [
            "name": "l", "project_id": "p", "start": .string(epoch.rfc3339),
            "end": .string((epoch + 3600).rfc3339), "reservations": [["kind": "host", "count": 1]],
        ]
        let lease = try await s.call(.leaseCreate, .object(p))
        let rid = try #require(lease["reservations"]?.arrayValue?.first?["id"]?.stringValue)
        await s.setUsageSource { [rid: 5] }
        _ = try await s.call(.clockAdvance, ["seconds": 7200])
        let (reserved, used) = hours(await s.metricsSnapshot())
        #expect(reserved == 1)
        #expect(used == 1)
    }
}
