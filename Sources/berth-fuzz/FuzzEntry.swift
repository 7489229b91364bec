// libFuzzer entry point: each input is one JSON-RPC request line for the in-process
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
        // BERTH_FUZZ_TALLY=1: at exit, how many replies were results and errors of each code.
        if getenv("BERTH_FUZZ_TALLY") != nil {
            harness!.tallying = true
            atexit {
                let counts = harness?.outcomes.sorted { $0.value > $1.value }.map { "\($0.key): \($0.value)" }
                print("berth-fuzz outcomes: \(counts?.joined(separator: ", ") ?? "")")
            }
        }
    }
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let problem = harness!.run(input) {
        fatalError(
            "berth-fuzz: invalid reply: \(problem)\ninput: \(String(decoding: input.prefix(2000), as: UTF8.self))")
    }
    return 0
}

@_silgen_name("LLVMFuzzerMutate")
func libFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

/// Three mutations in four are structural (`JSONMutator`: mutants stay JSON and reach the methods), one
/// is libFuzzer's byte-level (which keeps the parser under fire).
@_cdecl("LLVMFuzzerCustomMutator")
public func berthFuzzMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: CUnsignedInt)
    -> Int
{
    if seed % 4 != 0 {
        var mutator = JSONMutator(seed: UInt64(seed))
        if let out = mutator.mutate(Array(UnsafeBufferPointer(start: data, count: size)), maxSize: maxSize) {
            out.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: out.count) }
            return out.count
        }
    }
    return libFuzzerMutate(data, size, maxSize)
}
