import BerthContract
import BerthJSON
import BerthRPC
import Testing

@testable import BerthBlazar

@Suite("Berth leases as Blazar shows them")
struct BlazarLeaseViewTests {
    let lease: JSON = [
        "id": "6ee55c78-0000-4000-8000-123456789abc", "name": "l", "project_id": "p", "user_id": "u",
        "start": "2030-01-01T01:00:00Z", "end": "2030-01-01T03:00:00Z", "before_end_s": 600, "status": "active",
        "degraded": false, "cost": ["host_hours": 2], "created_at": "2030-01-01T00:00:00Z",
        "updated_at": "2030-01-01T00:00:00Z",
        "reservations": [
            ["id": "r1", "kind": "host", "count": 1, "status": "active", "allocations": [["host": "a"]]],
            [
                "id": "r2", "kind": "instance", "count": 2, "vcpus": 1, "memory_mb": 512, "disk_gb": 1,
                "affinity": "same_host", "status": "active", "allocations": [], "flavor_id": "r2",
                "source_flavor": ["id": "m1.tiny", "name": "m1.tiny"],
            ],
        ],
    ]

    @Test func statusesDatesAndTypes() {
        let v = BlazarLeaseView.lease(lease, now: "2030-01-01T02:55:00Z")
        #expect(v["status"] == "ACTIVE" && v["start_date"] == "2030-01-01T01:00:00.000000")
        #expect(v["created_at"] == "2030-01-01 00:00:00" && v["trust_id"] == .null)
        let host = v["reservations"]?.arrayValue?[0]
        #expect(host?["resource_type"] == "physical:host" && host?["min"] == 1 && host?["max"] == 1)
        #expect(host?["status"] == "active" && host?["lease_id"] == lease["id"])
        let flavor = v["reservations"]?.arrayValue?[1]
        #expect(flavor?["resource_type"] == "flavor:instance" && flavor?["affinity"] == true)
        #expect(
            flavor?["flavor_id"] == "r2"
                && flavor?["resource_properties"] == "{\"id\":\"m1.tiny\",\"name\":\"m1.tiny\"}")
        #expect(BlazarLeaseView.lease(lease, now: "", starting: true)["status"] == "STARTING")
    }

    @Test func eventsAreDoneOnceTheyHaveHappened() {
        let events = BlazarLeaseView.lease(lease, now: "2030-01-01T02:55:00Z")["events"]?.arrayValue ?? []
        #expect(events.map { $0["event_type"] } == ["start_lease", "before_end_lease", "end_lease"])
        #expect(events.map { $0["status"] } == ["DONE", "DONE", "UNDONE"])
        #expect(events[1]["time"] == "2030-01-01T02:50:00.000000")
        #expect(Set(events.compactMap { $0["id"]?.stringValue }).count == 3)
    }

    @Test func everyBerthStatusHasABlazarOne() {
        #expect(
            ["pending", "active", "ended", "error"].map(BlazarLeaseView.leaseStatus) == [
                "PENDING", "ACTIVE", "TERMINATED", "ERROR",
            ])
        #expect(
            ["pending", "active", "ended", "deleted", "error"].map(BlazarLeaseView.reservationStatus) == [
                "pending", "active", "deleted", "deleted", "error",
            ])
    }

    @Test func contractErrorsGetBlazarsStatuses() {
        let capacity = BlazarError(
            RPCError(.noCapacity, message: "no room", data: ["earliest_start": "2030-01-02T00:00:00Z"]))
        #expect(capacity.status == 500 && capacity.message == "Not enough hosts available")
        #expect(capacity.extra["earliest_start"] == "2030-01-02T00:00:00Z" && capacity.json["error_name"] == 500)
        #expect(BlazarError(RPCError(.insufficientCredits, message: "short")).status == 403)
        #expect(BlazarError(RPCError(.conflict, message: "c")).status == 409)
        #expect(
            BlazarError(RPCError(.notFound, message: "n"), notFound: ("lease_id", "x")).message
                == "Object with {'lease_id': 'x'} not found")
    }
}
