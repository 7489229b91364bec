// libFuzzer entry point (issue #9): each input is one JSON-RPC request line for the in-process
// daemon (`FuzzWorld`); a reply that is not a valid JSON-RPC 2.0 answer is turned into a crash so
// libFuzzer saves the input. Built only with the fuzzer runtime, which supplies `main`:
//   BERTH_FUZZ=1 swift build --sanitize=fuzzer --product berth-fuzz --scratch-path .build-fuzz
// (`make fuzz-short`, `make fuzz`; docs/reliability.md, "Fuzzing").
import BerthFuzz

#if canImport(Glibc)
    import Glibc
#endif

/// libFuzzer calls the entry point from one thread only, so the harness needs no lock.
nonisolated(unsafe) private var harness: FuzzHarness?

@_cdecl("LLVMFuzzerTestOneInput")
public func berthFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if harness == nil {
        let perWorld = getenv("BERTH_FUZZ_WORLD_INPUTS").flatMap { Int(String(cString: $0)) } ?? 2000
        harness = FuzzHarness(inputsPerWorld: max(1, perWorld))
    }
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let problem = harness!.run(input) {
        fatalError("berth-fuzz: invalid reply: \(problem)\ninput: \(String(decoding: input.prefix(2000), as: UTF8.self))")
    }
    return 0
}
