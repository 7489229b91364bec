import BerthCore
import BerthJSON
import BerthTestSupport
import Testing

@testable import BerthService

/// Random sequences of mixed host, GPU-slice and instance leases (creates, updates, deletes and
/// clock moves), checked after every step by brute force at every instant: no two slices overlap on
/// a GPU, every slice starts at an allowed slot of its profile, no host's vcpus, memory or disk are
/// exceeded, and a host reserved whole shares nothing.
@Suite struct MixedPlacementPropertyTests {
    static let profiles = ["1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]

    func randomRequest(_ rng: inout SplitMix64) -> JSON {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0:
            return ["kind": "host", "count": .int(Int64.random(in: 1...2, using: &rng))]
        case 1:
            return [
                "kind": "gpu", "profile": .string(Self.profiles[Int.random(in: 0..<Self.profiles.count, using: &rng)]),
                "count": .int(Int64.random(in: 1...3, using: &rng)),
            ]
        default:
            var r: JSON = [
                "kind": "instance", "vcpus": .int(Int64.random(in: 1...16, using: &rng)),
                "memory_mb": .int(Int64(1024 * Int.random(in: 1...16, using: &rng))), "disk_gb": 10,
                "count": .int(Int64.random(in: 1...4, using: &rng)),
            ]
            if Bool.random(using: &rng), case .object(var o) = r {
                o["affinity"] = Bool.random(using: &rng) ? "same_host" : "different_host"
                r = .object(o)
            }
            if Int.random(in: 0..<4, using: &rng) == 0, case .object(var o) = r {
                o["gpu_profile"] = .string(["1g.5gb", "2g.10gb"][Int.random(in: 0..<2, using: &rng)])
                r = .object(o)
            }
            return r
        }
    }

    @Test(arguments: [11, 12, 13, 14] as [UInt64])
    func mixedSequencesNeverOverbook(seed: UInt64) async throws {
        let s = try makeScheduler(temporaryDirectory())
        for i in 0..<3 {
            _ = try await s.call(
                .hostCreate, ["name": .string("c\(i)"), "vcpus": 32, "memory_mb": 65536, "disk_gb": 100])
        }
        for i in 0..<2 {
            _ = try await s.call(
                .hostCreate,
                [
                    "name": .string("g\(i)"), "vcpus": 64, "memory_mb": 131_072, "disk_gb": 200,
                    "gpus": [["model": "A100-40GB"], ["model": "A100-40GB"]],
                ])
        }
        var rng = SplitMix64(seed: seed)
        var now = epoch
        var accepted = 0
        for step in 0..<200 {
            let op = Int.random(in: 0..<10, using: &rng)
            if op < 6 {
                let start = now + 3600 * Int64.random(in: 0..<24, using: &rng)
                let end = start + 3600 * Int64.random(in: 1..<12, using: &rng)
                let reservations = (0..<Int.random(in: 1...2, using: &rng)).map { _ in randomRequest(&rng) }
                let r = try? await s.call(
                    .leaseCreate,
                    [
                        "name": "m", "project_id": "p", "start": .string(start.rfc3339), "end": .string(end.rfc3339),
                        "reservations": .array(reservations),
                    ])
                if r != nil { accepted += 1 }
            } else if op < 8 {
                let live = await s.leases.values.filter { $0.status == .pending || $0.status == .active }.sorted {
                    $0.id < $1.id
                }
                if let l = live.isEmpty ? nil : live[Int.random(in: 0..<live.count, using: &rng)] {
                    if Bool.random(using: &rng) {
                        _ = try? await s.call(.leaseDelete, ["id": .string(l.id)])
                    } else {
                        let newEnd = max(l.start, now) + 3600 * Int64.random(in: 1..<14, using: &rng)
                        _ = try? await s.call(.leaseUpdate, ["id": .string(l.id), "end": .string(newEnd.rfc3339)])
                    }
                }
            } else {
                now = now + 1800 * Int64.random(in: 1...6, using: &rng)
                _ = try await s.call(.clockSet, ["now": .string(now.rfc3339)])
            }
            let hosts = await s.hosts
            let leases = await s.leases.values.filter { $0.status.occupiesCalendar }
            try check(leases: Array(leases), hosts: hosts, context: "seed \(seed) step \(step)")
        }
        #expect(accepted > 20, "seed \(seed): the trace should exercise placement (accepted \(accepted))")
    }

    /// Brute force: every instant at which any allocation starts, on every host.
    func check(leases: [Lease], hosts: [String: Host], context: String) throws {
        let models = GPUModelTable.builtIn
        var instants: Set<Int64> = []
        for l in leases { instants.insert(l.start.seconds) }
        for t in instants {
            let live = leases.filter { $0.start.seconds <= t && t < $0.end.seconds }
            var whole: [String: Int] = [:]
            var slices: [String: UInt16] = [:]  // "host/gpu" -> mask
            var meCount: [String: Int] = [:]
            var used: [String: (Int64, Int64, Int64)] = [:]
            var partly: Set<String> = []
            for l in live {
                for r in l.reservations {
                    if r.request.kind == .instance, r.request.gpuProfile != nil {
                        let slots = r.allocations.filter { $0.gpu == nil }.reduce(0) { $0 + ($1.slots ?? 0) }
                        let slices = r.allocations.filter { $0.gpu != nil }.count
                        #expect(slots == slices, "\(context): \(slots) instances but \(slices) GPU slices")
                    }
                    for a in r.allocations {
                        switch a.gpu != nil ? .gpu : r.request.kind {
                        case .host:
                            whole[a.host, default: 0] += 1
                        case .gpu:
                            partly.insert(a.host)
                            let host = try #require(hosts[a.host])
                            let gpu = try #require(a.gpu)
                            let model = try #require(models.model(named: host.gpus[gpu].model))
                            let profileName = try #require(a.profile)
                            let profile = try #require(model.profile(named: profileName))
                            let slot = try #require(a.slot)
                            #expect(
                                profile.starts.contains(slot), "\(context): \(profile.name) at disallowed slot \(slot)")
                            let mask = profile.mask(at: slot)
                            let key = "\(a.host)/\(gpu)"
                            #expect(
                                slices[key, default: 0] & mask == 0, "\(context): overlapping slices on \(key) at \(t)")
                            slices[key, default: 0] |= mask
                            if profile.mediaExtensions { meCount[key, default: 0] += 1 }
                        case .instance:
                            partly.insert(a.host)
                            let n = Int64(a.slots ?? 0)
                            let u = used[a.host] ?? (0, 0, 0)
                            used[a.host] = (
                                u.0 + n * (r.request.vcpus ?? 0), u.1 + n * (r.request.memoryMB ?? 0),
                                u.2 + n * (r.request.diskGB ?? 0)
                            )
                        }
                    }
                }
            }
            for (h, n) in whole {
                #expect(n == 1, "\(context): host \(h) reserved whole \(n) times at \(t)")
                #expect(!partly.contains(h), "\(context): host \(h) reserved whole and shared at \(t)")
            }
            for (key, n) in meCount { #expect(n <= 1, "\(context): \(n) +me instances on \(key)") }
            for (h, u) in used {
                let host = try #require(hosts[h])
                #expect(
                    u.0 <= host.vcpus && u.1 <= host.memoryMB && u.2 <= host.diskGB,
                    "\(context): \(h) over capacity at \(t): \(u)")
            }
        }
    }
}
