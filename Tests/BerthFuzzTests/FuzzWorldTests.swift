import BerthJSON
import Foundation
import Testing

@testable import BerthFuzz

/// The in-process request path the libFuzzer target drives: the committed corpus and a few hostile
/// inputs must all get valid replies (a regression test for every corpus file, without the fuzzer
/// runtime), and the `@lease`/`@preemptible` ids must lead to objects that exist.
@Suite(.serialized) struct FuzzWorldTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../fuzz/corpus").standardized

    /// Each input in a world of its own? Too slow; `perWorld` inputs share one, as in the fuzzer.
    static func problems(_ inputs: [(String, [UInt8])], perWorld: Int) async throws -> [String] {
        var out: [String] = []
        var world: FuzzWorld? = nil
        for (k, (name, input)) in inputs.enumerated() {
            if k % perWorld == 0 {
                world?.remove()
                world = try await FuzzWorld()
            }
            if let p = await world!.check(input, connection: UInt64(k)) { out.append("\(name): \(p)") }
        }
        world?.remove()
        return out
    }

    @Test func everyCorpusInputGetsAValidReply() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).sorted()
        #expect(files.count >= 40, "the corpus lost its seeds")
        let inputs = try files.map { ($0, Array(try Data(contentsOf: Self.corpus.appendingPathComponent($0)))) }
        let problems = try await Self.problems(inputs, perWorld: 25)
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test func hostileInputsGetValidReplies() async throws {
        var inputs: [[UInt8]] = [
            [], [0xFF, 0xFE], Array("[".utf8) + Array(repeating: UInt8(ascii: "["), count: 10_000),
            Array(String(repeating: "[", count: 256).utf8) + Array(String(repeating: "]", count: 256).utf8),
            Array(String(repeating: "[", count: 257).utf8) + Array(String(repeating: "]", count: 257).utf8),
            Array(#"{"jsonrpc":"2.0","method":"clock.advance","params":{"seconds":1e400},"id":1}"#.utf8),
            Array(
                #"{"jsonrpc":"2.0","method":"clock.advance","params":{"seconds":1606938044258990275541962092341162602522202993782792835301376},"id":2}"#
                    .utf8),
            Array(#"{"jsonrpc":"2.0","method":"lease.list","params":{"limit":-0},"id":-0}"#.utf8),
            Array(#"{"jsonrpc":"2.0","method":"lease.list","params":{"limit":1e-400},"id":1e-400}"#.utf8),
        ]
        let call = #"{"jsonrpc":"2.0","method":"system.health","id":1}"#
        inputs.append(Array(("[" + Array(repeating: call, count: 1000).joined(separator: ",") + "]").utf8))
        inputs.append(Array(("[" + Array(repeating: call, count: 1001).joined(separator: ",") + "]").utf8))
        let named = inputs.map { (String(decoding: $0.prefix(120), as: UTF8.self), $0) }
        let problems = try await Self.problems(named, perWorld: 1000)
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test func placeholderIDsNameObjectsThatExist() async throws {
        let world = try await FuzzWorld()
        defer { world.remove() }
        for (method, token) in [("lease.get", "@lease"), ("preemptible.get", "@preemptible")] {
            let line = world.substitutingIDs(
                Array(#"{"jsonrpc":"2.0","method":"\#(method)","params":{"id":"\#(token)"},"id":1}"#.utf8))
            let reply = try #require(await world.process(line, connection: 1))
            let json = try JSONParser.parse(reply)
            #expect(
                json["result"]?["id"]?.stringValue?.count == 36, "\(method): \(String(decoding: reply, as: UTF8.self))")
        }
    }
}
