import BerthJSON
import Testing

@testable import BerthFuzz

/// Regression tests for what the fuzzers found (docs/reliability.md, "Fuzzing", findings).
@Suite struct FuzzFindingsTests {
    /// The reply to one line in a fresh world, parsed.
    static func reply(_ line: String) async throws -> JSON {
        try await replies([line])[0]
    }

    /// The replies to lines sent one after another in one fresh world, parsed.
    static func replies(_ lines: [String]) async throws -> [JSON] {
        let world = try await FuzzWorld()
        defer { world.remove() }
        var out: [JSON] = []
        for line in lines {
            let bytes = try #require(await world.process(world.substitutingIDs(Array(line.utf8)), connection: 1))
            out.append(try JSONParser.parse(bytes))
        }
        return out
    }

    static func call(_ method: String, _ params: String) -> String {
        #"{"jsonrpc":"2.0","method":"\#(method)","params":\#(params),"id":1}"#
    }

    /// Socket fuzzer, seed 1: `preemptible.create` took `memory_mb: 0`, which the contract's params
    /// and result schemas forbid (minimum 1), so `preemptible.list` then returned an invalid item.
    @Test func preemptibleWithoutMemoryIsInvalidParams() async throws {
        let r = try await Self.reply(
            #"{"jsonrpc":"2.0","method":"preemptible.create","params":{"project_id":"p1","vcpus":1,"memory_mb":0,"disk_gb":0},"id":1}"#
        )
        #expect(r["error"]?["code"] == -32602)
        #expect(r["error"]?["data"]?["errors"]?.arrayValue?.first?["path"] == "memory_mb")
        let ok = try await Self.reply(
            #"{"jsonrpc":"2.0","method":"preemptible.create","params":{"project_id":"p1","vcpus":1,"memory_mb":1,"disk_gb":0},"id":1}"#
        )
        #expect(ok["result"]?["id"] != nil)
    }

    /// Socket fuzzer, seed 1: `clock.set` to 9999-12-31T23:59:59Z (the last representable second)
    /// and then `host.update` crashed berthd: the window `[now, distantFuture)` it checks was empty
    /// (a precondition of `Interval`). The manual clock now stops one second short of it.
    @Test func manualClockStopsBeforeTheEndOfTime() async throws {
        let r = try await Self.replies([
            Self.call("clock.set", #"{"now":"9999-12-31T23:59:59Z"}"#),
            Self.call("clock.set", #"{"now":"9999-12-31T23:59:58Z"}"#),
            Self.call("host.update", #"{"name":"compute-1","vcpus":8}"#),
            Self.call("clock.advance", #"{"seconds":1}"#),
            Self.call("clock.advance", #"{"seconds":0}"#),
        ])
        #expect(r[0]["error"]?["code"] == -32602)
        #expect(r[0]["error"]?["data"]?["errors"]?.arrayValue?.first?["path"] == "now")
        #expect(r[1]["result"]?["now"] == "9999-12-31T23:59:58Z")
        #expect(r[2]["result"]?["vcpus"] == 8)
        #expect(r[3]["error"]?["data"]?["errors"]?.arrayValue?.first?["path"] == "seconds")
        #expect(r[4]["result"]?["now"] == "9999-12-31T23:59:58Z")
    }

    /// libFuzzer: a host with a huge `memory_mb` (any Int64 is accepted) made the best-fit score of
    /// `preemptible.create` overflow (`left × 10⁶`), a crash.
    @Test func hugeHostCapacitiesDoNotOverflowTheFitScore() async throws {
        let r = try await Self.replies([
            Self.call(
                "host.update", #"{"name":"compute-1","memory_mb":9223372036854775807,"disk_gb":9223372036854775807}"#),
            Self.call("host.update", #"{"name":"compute-2","state":"down"}"#),
            Self.call("host.update", #"{"name":"compute-3","state":"down"}"#),
            Self.call("preemptible.create", #"{"project_id":"p1","vcpus":1,"memory_mb":1,"disk_gb":0}"#),
            Self.call(
                "lease.create",
                #"{"name":"i","project_id":"p1","start":"now","end":"2030-01-01T05:00:00Z","reservations":[{"kind":"instance","vcpus":1,"memory_mb":1,"disk_gb":0,"count":2}]}"#
            ),
        ])
        #expect(r[0]["result"]?["memory_mb"] == .int(Int64.max))
        #expect(r[3]["result"]?["id"] != nil, "\(r[3])")
        #expect(r[4]["result"]?["id"] != nil, "\(r[4])")
    }

    /// Socket fuzzer, seed 100: at the end of time, `preemptible.create` guaranteed until
    /// "10000-01-01T00:59:58Z" and `availability.find` offered windows ending in the year 10000,
    /// which the contract's timestamp format (four-digit years) cannot carry.
    @Test func nothingIsPromisedPastTheEndOfTime() async throws {
        let r = try await Self.replies([
            Self.call("clock.set", #"{"now":"9999-12-31T23:00:00Z"}"#),
            Self.call("preemptible.create", #"{"project_id":"p1","vcpus":1,"memory_mb":1,"disk_gb":0}"#),
            Self.call(
                "preemptible.create", #"{"project_id":"p1","vcpus":1,"memory_mb":1,"disk_gb":0,"min_lifetime_s":3599}"#),
            Self.call(
                "availability.find", #"{"reservations":[{"kind":"host","count":1}],"duration_s":1800,"limit":100}"#),
            Self.call("availability.find", #"{"reservations":[{"kind":"host","count":1}],"duration_s":7200}"#),
            Self.call(
                "availability.find",
                #"{"reservations":[{"kind":"host","count":1}],"duration_s":1800,"earliest":"9999-12-31T23:59:00Z"}"#),
        ])
        #expect(r[1]["error"]?["data"]?["errors"]?.arrayValue?.first?["path"] == "min_lifetime_s", "\(r[1])")
        #expect(r[2]["result"]?["guaranteed_until"] == "9999-12-31T23:59:59Z", "\(r[2])")
        let windows = try #require(r[3]["result"]?["items"]?.arrayValue, "\(r[3])")
        #expect(!windows.isEmpty)
        for w in windows { #expect(w["end"]?.stringValue?.hasPrefix("9999-") == true, "\(w)") }
        #expect(r[4]["result"]?["items"] == [], "\(r[4])")
        #expect(r[5]["result"]?["items"] == [], "\(r[5])")
    }

    /// Socket fuzzer, seed 100: `events.subscribe` took the type pattern "lehost.downR", which the
    /// contract's EventTypePattern forbids and which silently matches nothing.
    @Test func eventTypePatternsAreChecked() async throws {
        let r = try await Self.replies([
            Self.call("events.subscribe", #"{"types":["lease.*","lehost.downR"]}"#),
            Self.call("events.list", #"{"types":["Lease.*"]}"#),
            Self.call("events.list", #"{"types":["lease.", ".*", "lease.created.x", "**"]}"#),
            Self.call("events.subscribe", #"{"types":["*","lease.*","host.down","preemption.scheduled"]}"#),
            Self.call("events.list", #"{"types":["*","lease.*","lease.created"]}"#),
        ])
        #expect(r[0]["error"]?["data"]?["errors"]?.arrayValue?.map { $0["path"] } == ["types[1]"], "\(r[0])")
        #expect(r[1]["error"]?["data"]?["errors"]?.arrayValue?.map { $0["path"] } == ["types[0]"], "\(r[1])")
        #expect(r[2]["error"]?["data"]?["errors"]?.arrayValue?.count == 4, "\(r[2])")
        #expect(r[3]["result"]?["subscription"] != nil, "\(r[3])")
        #expect(r[4]["result"]?["items"]?.arrayValue?.isEmpty == false, "\(r[4])")
    }

    /// Socket fuzzer, seed 100: `preemptible.list` took `host: "compute37}-1"`, which the contract's
    /// HostName forbids, and answered an empty list instead of naming the mistake.
    @Test func preemptibleListChecksTheHostName() async throws {
        let r = try await Self.replies([
            Self.call("preemptible.list", #"{"host":"compute37}-1"}"#),
            Self.call("preemptible.list", #"{"host":"compute-1"}"#),
        ])
        #expect(r[0]["error"]?["data"]?["errors"]?.arrayValue?.map { $0["path"] } == ["host"], "\(r[0])")
        #expect(r[1]["result"]?["items"] != nil, "\(r[1])")
    }

    /// Socket fuzzer in CI (seed 1, json_mutation): `events.subscribe` and `events.list` took
    /// `types: []` (schema: at least one pattern) and `host.list` a property filter with an empty
    /// name (schema: property names are not empty), reading both as "no filter".
    @Test func emptyFiltersAreInvalidParams() async throws {
        let r = try await Self.replies([
            Self.call("events.subscribe", #"{"types":[]}"#),
            Self.call("events.list", #"{"types":[]}"#),
            Self.call("host.list", #"{"properties":{"":"r1"}}"#),
            Self.call("host.list", #"{"properties":{"rack":"r1"}}"#),
        ])
        #expect(r[0]["error"]?["data"]?["errors"]?.arrayValue?.map { $0["path"] } == ["types"], "\(r[0])")
        #expect(r[1]["error"]?["data"]?["errors"]?.arrayValue?.map { $0["path"] } == ["types"], "\(r[1])")
        #expect(r[2]["error"]?["code"] == -32602, "\(r[2])")
        #expect(r[3]["result"]?["items"] != nil, "\(r[3])")
    }
}
