import BerthJSON
import Testing

@testable import BerthFuzz

/// Regression tests for what the fuzzers found (docs/reliability.md, "Fuzzing", findings).
@Suite struct FuzzFindingsTests {
    /// The reply to one line in a fresh world, parsed.
    static func reply(_ line: String) async throws -> JSON {
        let world = try await FuzzWorld()
        defer { world.remove() }
        let bytes = try #require(await world.process(world.substitutingIDs(Array(line.utf8)), connection: 1))
        return try JSONParser.parse(bytes)
    }

    /// Socket fuzzer, seed 1: `preemptible.create` took `memory_mb: 0`, which the contract's params
    /// and result schemas forbid (minimum 1), so `preemptible.list` then returned an invalid item.
    @Test func preemptibleWithoutMemoryIsInvalidParams() async throws {
        let r = try await Self.reply(
            #"{"jsonrpc":"2.0","method":"preemptible.create","params":{"project_id":"p1","vcpus":1,"memory_mb":0,"disk_gb":0},"id":1}"#)
        #expect(r["error"]?["code"] == -32602)
        #expect(r["error"]?["data"]?["errors"]?.arrayValue?.first?["path"] == "memory_mb")
        let ok = try await Self.reply(
            #"{"jsonrpc":"2.0","method":"preemptible.create","params":{"project_id":"p1","vcpus":1,"memory_mb":1,"disk_gb":0},"id":1}"#)
        #expect(ok["result"]?["id"] != nil)
    }
}
