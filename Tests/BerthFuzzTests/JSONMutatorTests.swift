import BerthJSON
import Testing

@testable import BerthFuzz

/// The custom mutator keeps mutants JSON (so they get past the parser), changes them, respects the
/// size limit, and is determined by its seed (libFuzzer replays runs by seed).
@Suite struct JSONMutatorTests {
    static let seed = Array(
        #"{"jsonrpc":"2.0","method":"lease.create","params":{"name":"l","project_id":"p1","start":"now","end":"2030-01-01T05:00:00Z","reservations":[{"kind":"host","count":1}]},"id":1}"#
            .utf8)

    @Test func mutantsAreJSONAndDiffer() throws {
        var changed = 0
        for s in 0..<500 {
            var m = JSONMutator(seed: UInt64(s))
            let mutant = m.mutate(Self.seed, maxSize: 1 << 16)
            let out = try #require(mutant)
            #expect((try? JSONParser.parse(out)) != nil)
            if out != (try JSONParser.parse(Self.seed)).serializedBytes() { changed += 1 }
        }
        #expect(changed > 400)
    }

    @Test func sameSeedSameMutantAndNonJSONIsLeftToLibFuzzer() {
        var a = JSONMutator(seed: 42)
        var b = JSONMutator(seed: 42)
        #expect(a.mutate(Self.seed, maxSize: 1 << 16) == b.mutate(Self.seed, maxSize: 1 << 16))
        #expect(a.mutate(Array("{not json".utf8), maxSize: 100) == nil)
        #expect(a.mutate(Self.seed, maxSize: 10) == nil)
    }
}
