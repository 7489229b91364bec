import BerthCore
import BerthJSON
import Testing

@testable import BerthBlazar

@Suite("Blazar lease bodies as contract params")
struct BlazarLeaseRequestTests {
    let alice = BlazarCaller(userID: "u-alice", projectID: "p-science", roles: ["member", "reader"])
    let now = Timestamp(rfc3339: "2030-01-01T00:00:30Z")!

    func body(_ extra: [String: JSON] = [:], reservations: [JSON]? = nil) -> JSON {
        var o: [String: JSON] = [
            "name": "l", "start_date": "2030-01-01 01:00", "end_date": "2030-01-01 03:00", "events": [],
            "before_end_date": .null,
            "reservations": .array(
                reservations ?? [
                    [
                        "resource_type": "physical:host", "min": 1, "max": 2,
                        "hypervisor_properties": "[\">=\", \"$vcpus\", \"4\"]", "resource_properties": "",
                    ]
                ]),
        ]
        for (k, v) in extra { o[k] = v }
        return .object(o)
    }

    @Test func aHostLeaseForTheCallersProject() throws {
        let p = try BlazarLeaseRequest.create(body(), caller: alice, now: now)
        #expect(p["project_id"] == "p-science" && p["user_id"] == "u-alice")
        #expect(p["start"] == "2030-01-01T01:00:00Z" && p["end"] == "2030-01-01T03:00:00Z")
        let r = p["reservations"]?.arrayValue?[0]
        #expect(r == ["kind": "host", "min": 1, "max": 2, "properties": [">=", "$vcpus", "4"]])
    }

    @Test func nowAndTheMinuteItFallsIn() throws {
        let p = try BlazarLeaseRequest.create(body(["start_date": "now"]), caller: alice, now: now)
        #expect(p["start"] == "now")
        // A start earlier in the current minute is still allowed, as Blazar truncates now.
        _ = try BlazarLeaseRequest.create(body(["start_date": "2030-01-01 00:00"]), caller: alice, now: now)
        #expect(throws: BlazarError(400, "Start date must be later than current date")) {
            try BlazarLeaseRequest.create(body(["start_date": "2029-12-31 23:59"]), caller: alice, now: now)
        }
    }

    @Test func blazarsMessagesForTheMistakesItsClientsKnow() {
        #expect(throws: BlazarError(400, "Missing parameter name, end_date")) {
            try BlazarLeaseRequest.create(body(["name": .null, "end_date": .null]), caller: alice, now: now)
        }
        #expect(throws: BlazarError(400, "End date must be later than start date.")) {
            try BlazarLeaseRequest.create(body(["end_date": "2030-01-01 01:00"]), caller: alice, now: now)
        }
        #expect(throws: BlazarError(403, "Datetime is out of lease limits")) {
            try BlazarLeaseRequest.create(body(["before_end_date": "2030-01-01 04:00"]), caller: alice, now: now)
        }
        #expect(throws: BlazarError(400, "Missing parameter resource_type")) {
            try BlazarLeaseRequest.create(body(reservations: [["min": 1]]), caller: alice, now: now)
        }
        #expect(throws: BlazarError(400, "Malformed parameter min and max (must be greater than or equal to 1)")) {
            try BlazarLeaseRequest.create(
                body(reservations: [["resource_type": "physical:host", "min": 0, "max": 1]]), caller: alice, now: now)
        }
        #expect(throws: BlazarError(400, "The x:y resource type is not supported")) {
            try BlazarLeaseRequest.create(body(reservations: [["resource_type": "x:y"]]), caller: alice, now: now)
        }
    }

    @Test func instancesAndFlavorsWithTheCLIsStrings() throws {
        let p = try BlazarLeaseRequest.create(
            body(reservations: [
                [
                    "resource_type": "virtual:instance", "amount": 3, "vcpus": "2", "memory_mb": 1024, "disk_gb": 10,
                    "affinity": "False", "resource_properties": "",
                ],
                ["resource_type": "flavor:instance", "flavor_id": "m1.small", "amount": 2, "affinity": "None"],
            ]), caller: alice, now: now)
        #expect(
            p["reservations"]?.arrayValue?[0]
                == [
                    "kind": "instance", "count": 3, "vcpus": 2, "memory_mb": 1024, "disk_gb": 10,
                    "affinity": "different_host",
                ])
        #expect(
            p["reservations"]?.arrayValue?[1] == [
                "kind": "instance", "count": 2, "flavor_id": "m1.small", "affinity": .null,
            ])
    }

    @Test func propertyExpressionsMapOntoBerthsNames() throws {
        let f = try BlazarPropertyExpression.filter(
            hypervisor: "[\"and\", [\"=\", \"$local_gb\", \"100\"], [\">\", \"$memory_mb\", \"4096\"]]",
            resource: "[\"==\", \"$gpu\", \"True\"]")
        #expect(
            f == ["and", ["and", ["==", "$disk_gb", "100"], [">", "$memory_mb", "4096"]], ["==", "$gpu", "True"]])
        #expect(try BlazarPropertyExpression.filter(hypervisor: "", resource: "[]") == nil)
        #expect(throws: BlazarError.self) {
            try BlazarPropertyExpression.filter(hypervisor: "[\"~\", \"$a\", 1]", resource: nil)
        }
        #expect(BlazarPropertyExpression.string(["rack": "r1"]) == "[\"==\",\"$rack\",\"r1\"]")
    }

    @Test func anUpdateChangesOnlyWhatItNames() throws {
        let lease: JSON = [
            "id": "l1", "start": "2030-01-01T01:00:00Z", "end": "2030-01-01T03:00:00Z", "status": "pending",
            "reservations": [
                ["id": "r1", "kind": "host", "count": 1, "status": "pending", "allocations": [["host": "a"]]],
                [
                    "id": "r2", "kind": "instance", "count": 2, "vcpus": 1, "memory_mb": 512, "disk_gb": 1,
                    "flavor_id": "r2",
                    "status": "pending", "allocations": [],
                ],
            ],
        ]
        let p = try BlazarLeaseRequest.update(
            ["end_date": "2030-01-01 04:00", "reservations": [["id": "r1", "min": 1, "max": 3]]], lease: lease, now: now
        )
        #expect(p["end"] == "2030-01-01T04:00:00Z" && p["start"] == nil)
        #expect(p["reservations"]?.arrayValue?[0] == ["id": "r1", "kind": "host", "min": 1, "max": 3])
        #expect(
            p["reservations"]?.arrayValue?[1] == [
                "id": "r2", "kind": "instance", "count": 2, "vcpus": 1, "memory_mb": 512, "disk_gb": 1,
            ])
        #expect(throws: BlazarError.notFound("reservation_id", "r9")) {
            try BlazarLeaseRequest.update(["reservations": [["id": "r9", "min": 1]]], lease: lease, now: now)
        }
    }
}
