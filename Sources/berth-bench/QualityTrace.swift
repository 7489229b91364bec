import BerthCore
import BerthJSON
import BerthTestSupport

/// A deterministic synthetic workload: mixed host, instance and MIG requests arriving one after
/// another, each for a window in the next two weeks. The same seed always yields the same trace, so
/// two placement policies can be compared on exactly the same demand.
struct QualityTrace {
    struct Request {
        var requests: [ReservationRequest]
        var window: Interval
        var kind: ReservationKind
    }

    static let base = Timestamp(rfc3339: "2030-01-01T00:00:00Z")!

    static func cloud() -> [Host] {
        var hosts: [Host] = []
        for i in 0..<12 {
            hosts.append(
                Host(
                    name: "cpu-\(i < 10 ? "0" : "")\(i)", vcpus: 64, memoryMB: 262_144, diskGB: 1000, createdAt: base,
                    updatedAt: base))
        }
        for i in 0..<4 {
            hosts.append(
                Host(
                    name: "gpu-0\(i)", vcpus: 64, memoryMB: 524_288, diskGB: 2000,
                    gpus: Array(repeating: GPUSpec(model: "A100-40GB"), count: 4), createdAt: base, updatedAt: base))
        }
        return hosts
    }

    static func generate(seed: UInt64, count: Int) -> [Request] {
        var rng = SplitMix64(seed: seed)
        // Small profiles are common, whole GPUs rare: the mix that fragments GPUs.
        let profiles: [(String, Int)] = [
            ("1g.5gb", 40), ("1g.10gb", 15), ("2g.10gb", 15), ("3g.20gb", 12), ("4g.20gb", 8), ("7g.40gb", 10),
        ]
        let totalWeight = profiles.reduce(0) { $0 + $1.1 }
        var out: [Request] = []
        for _ in 0..<count {
            let start = base.seconds + 3600 * Int64.random(in: 0..<(14 * 24), using: &rng)
            let window = Interval(start: start, end: start + 3600 * Int64.random(in: 1...36, using: &rng))
            let roll = Int.random(in: 0..<100, using: &rng)
            if roll < 25 {
                out.append(
                    Request(
                        requests: [ReservationRequest(hosts: Int64.random(in: 1...3, using: &rng))], window: window,
                        kind: .host))
            } else if roll < 60 {
                var r = ReservationRequest(hosts: 1)
                r.kind = .instance
                r.vcpus = [2, 4, 8, 16, 32][Int.random(in: 0..<5, using: &rng)]
                r.memoryMB = r.vcpus! * 4096
                r.diskGB = 20
                let n = Int64.random(in: 1...4, using: &rng)
                r.min = n
                r.max = n
                out.append(Request(requests: [r], window: window, kind: .instance))
            } else {
                var pick = Int.random(in: 0..<totalWeight, using: &rng)
                var profile = profiles[0].0
                for (p, w) in profiles {
                    if pick < w {
                        profile = p
                        break
                    }
                    pick -= w
                }
                var r = ReservationRequest(hosts: 1)
                r.kind = .gpu
                r.profile = profile
                let n = Int64.random(in: 1...3, using: &rng)
                r.min = n
                r.max = n
                out.append(Request(requests: [r], window: window, kind: .gpu))
            }
        }
        return out
    }

    /// Replays a trace against an empty calendar with one policy; returns acceptances per kind.
    static func replay(_ trace: [Request], hosts: [Host], policy: PlacementPolicy) -> [ReservationKind: (
        accepted: Int, total: Int
    )] {
        var calendar = LeaseCalendar()
        var tally: [ReservationKind: (accepted: Int, total: Int)] = [:]
        for (n, t) in trace.enumerated() {
            let planner = LeasePlanner(hosts: hosts, calendar: calendar, policy: policy)
            var entry = tally[t.kind] ?? (0, 0)
            entry.total += 1
            if case .success(let allocations) = planner.place(t.requests, window: t.window) {
                entry.accepted += 1
                var lease = Lease(
                    id: "q\(n)", name: "q", projectID: "q", userID: nil, start: Timestamp(seconds: t.window.start),
                    end: Timestamp(seconds: t.window.end), beforeEndSeconds: nil, status: .pending,
                    reservations: [], createdAt: base)
                lease.reservations = zip(t.requests, allocations).map {
                    Reservation(id: "r\(n)", request: $0, status: .pending, allocations: $1)
                }
                calendar.add(lease)
            }
            tally[t.kind] = entry
        }
        return tally
    }
}
