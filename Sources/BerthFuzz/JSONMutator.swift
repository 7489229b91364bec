import BerthContract
import BerthCore
import BerthJSON
import BerthService
import BerthTestSupport

/// Structure-aware mutations for libFuzzer's custom mutator: an input that parses as JSON is
/// changed as a tree (a value replaced by one of another type or a boundary value, a member or
/// element dropped or repeated, a key or method renamed to one of the contract's, the request put
/// in a batch) and printed again, so most mutants stay JSON and reach method dispatch and parameter
/// validation instead of stopping at -32700. Byte-level mutation (libFuzzer's own) still covers the
/// parser; the entry point alternates the two.
public struct JSONMutator {
    var rng: SplitMix64

    public init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    /// Method and parameter names of the served OpenRPC document.
    static let vocabulary: (methods: [String], params: [String]) = {
        guard let doc = try? JSONParser.parse(openRPCDocumentText), let methods = doc["methods"]?.arrayValue else {
            return (["system.health"], ["name"])
        }
        var names: [String] = []
        var params: Set<String> = []
        for m in methods {
            if let n = m["name"]?.stringValue { names.append(n) }
            for p in m["params"]?.arrayValue ?? [] { if let n = p["name"]?.stringValue { params.insert(n) } }
        }
        return (
            names,
            params.sorted() + ["kind", "count", "min", "max", "profile", "gpu_model", "model", "affinity", "rack"]
        )
    }()

    /// Values at the edges of what parameters take, of every JSON type.
    static let interesting: [JSON] = [
        .null, true, false, 0, -1, 1, 2, 1000, 1001, .int(Int64.max), .int(Int64.min), .int(1 << 40),
        .int(100 * 366 * 86_400 + 1),
        .double(-0.0), .double(0.5), .double(1e300), .double(-1e300), .double(.leastNonzeroMagnitude), .double(3.0),
        "", "now", "@lease", "@preemptible", "x", "compute-1", "gpu-1", "p1", "host", "gpu", "instance", "1g.5gb",
        "7g.40gb",
        "A100-40GB", "same_host", "different_host", "maintenance", "down", "up", "pending", "active", "ended",
        "deleted",
        "host_hours", "gpu_slice_hours", "vcpu_hours", "0.000001", "12.5", "1e3",
        "2030-01-01T00:00:00Z", "2030-01-01T01:00:00+01:00", "2030-02-30T00:00:00Z", "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "2030-01-01T00:00:00.5Z", "2030-01-01", "lease.*", "*",
        .string(String(repeating: "a", count: 256)), "\u{0}", "é✓😀", "00000000-0000-4000-8000-000000000000",
        [], [:], ["and"], ["==", "$rack", "r1"], ["in", "$rack", ["r1", "r2"]], ["not", ["<", "$vcpus", 8]],
        ["kind": "host", "count": 1], ["model": "A100-40GB"], ["rack": "r1"],
    ]

    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(rng.next() % UInt64(n)) }

    /// The mutant, or nil when `bytes` is not JSON (or the mutant would exceed `maxSize`).
    public mutating func mutate(_ bytes: [UInt8], maxSize: Int) -> [UInt8]? {
        guard var value = try? JSONParser.parse(bytes) else { return nil }
        for _ in 0...below(3) { value = mutateTree(value, depth: 0) }
        let out = value.serializedBytes()
        return out.count <= maxSize ? out : nil
    }

    /// Mutates one node, chosen by walking down from `value` at random.
    mutating func mutateTree(_ value: JSON, depth: Int) -> JSON {
        switch value {
        case .object(var o) where !o.isEmpty && below(3) != 0 && depth < 200:
            let keys = o.keys.sorted()
            let k = keys[below(keys.count)]
            o[k] = mutateTree(o[k]!, depth: depth + 1)
            return .object(o)
        case .array(var a) where !a.isEmpty && below(3) != 0 && depth < 200:
            let i = below(a.count)
            a[i] = mutateTree(a[i], depth: depth + 1)
            return .array(a)
        default:
            return mutateNode(value)
        }
    }

    mutating func mutateNode(_ value: JSON) -> JSON {
        let words = Self.vocabulary
        switch below(12) {
        case 0, 1, 2, 9, 10:
            return Self.interesting[below(Self.interesting.count)]
        case 11:
            return .string(words.methods[below(words.methods.count)])
        case 3:  // drop a member or element
            if case .object(var o) = value, let k = o.keys.sorted().randomElement(using: &rng) {
                o[k] = nil
                return .object(o)
            }
            if case .array(var a) = value, !a.isEmpty {
                a.remove(at: below(a.count))
                return .array(a)
            }
            return .null
        case 4:  // add a member (a contract name) or repeat an element
            if case .object(var o) = value {
                o[words.params[below(words.params.count)]] = Self.interesting[below(Self.interesting.count)]
                return .object(o)
            }
            if case .array(var a) = value, !a.isEmpty {
                let e = a[below(a.count)]
                for _ in 0...below(4) { a.insert(e, at: below(a.count + 1)) }
                return .array(a)
            }
            return .array([value])
        case 5:  // rename a key
            if case .object(var o) = value, let k = o.keys.sorted().randomElement(using: &rng) {
                let v = o.removeValue(forKey: k)!
                o[words.params[below(words.params.count)]] = v
                return .object(o)
            }
            return .object([words.params[below(words.params.count)]: value])
        case 6:  // the same value as another type
            switch value {
            case .int(let i): return below(2) == 0 ? .string(String(i)) : .double(Double(i) + 0.5)
            case .double(let d): return .string("\(d)")
            case .string(let s): return Int64(s).map { .int($0) } ?? .array([value])
            case .bool(let b): return .int(b ? 1 : 0)
            default: return .string("x")
            }
        case 7:  // a number nudged across a boundary (else another value)
            if let i = value.intValue { return .int(i &+ Int64([-1, 1, -2, 1 << 20][below(4)])) }
            return Self.interesting[below(Self.interesting.count)]
        default:  // a request into a batch, next to a copy of itself
            if case .object = value { return .array([value, value]) }
            return Self.interesting[below(Self.interesting.count)]
        }
    }
}
