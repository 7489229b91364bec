import BerthCore
import BerthJSON
import BerthTestSupport

/// The first berth-bench's population and request stream, unchanged, because
/// benchmarks/peers/blazar/bench_blazar.py replays exactly these draws against Blazar: H CPU hosts
/// (`rack` r0..r19), L leases of 1–4 whole hosts for 1–72 h in the next 60 days (SplitMix64 seed
/// 42, placed by `LeasePlanner`), then requests of seed 7 (1–4 hosts, and 2 hosts with a rack filter).
/// Do not change a draw here without changing the Python port.
enum PeerSet {
    static let base = Timestamp(rfc3339: "2030-01-01T00:00:00Z")!
    static let horizon: Int64 = 60 * 86_400

    static func buildPopulation(hostCount: Int, leaseCount: Int) -> (hosts: [Host], calendar: LeaseCalendar) {
        var rng = SplitMix64(seed: 42)
        let hosts = (0..<hostCount).map { i in
            Host(
                name: "h\(String(i + 100_000).dropFirst())", vcpus: 64, memoryMB: 262_144, diskGB: 960,
                properties: ["rack": .string("r\(i % 20)")], createdAt: base, updatedAt: base)
        }
        var calendar = LeaseCalendar()
        var placed = 0
        while placed < leaseCount {
            let start = base + 3600 * Int64.random(in: 0..<(horizon / 3600), using: &rng)
            let window = Interval(
                start: start.seconds, end: start.seconds + 3600 * Int64.random(in: 1...72, using: &rng))
            let planner = LeasePlanner(hosts: hosts, calendar: calendar)
            let request = ReservationRequest(hosts: Int64.random(in: 1...4, using: &rng))
            guard case .success(let allocs) = planner.place([request], window: window) else { continue }
            for a in allocs[0] {
                calendar.insert(
                    host: a.host, interval: window,
                    entry: CalendarEntry(leaseID: "l\(placed)", reservationID: "r\(placed)"))
            }
            placed += 1
        }
        return (hosts, calendar)
    }

    /// The allocator rows of the first berth-bench (same names), at one legacy scale.
    static func run(scale: Scale, iterations: Int, report: Report) -> (hosts: [Host], calendar: LeaseCalendar) {
        let setupStart = nanos()
        let (hosts, calendar) = buildPopulation(hostCount: scale.hosts, leaseCount: scale.leases)
        // This line's shape is parsed by benchmarks/peers/blazar/compare.py: keep it.
        print(
            "population: \(scale.hosts) hosts, \(scale.leases) leases, \(calendar.allocationCount) allocations (built in \(seconds(since: setupStart)) s)"
        )
        var rng = SplitMix64(seed: 7)
        let planner = LeasePlanner(hosts: hosts, calendar: calendar)
        var samples: [Double] = []
        var filterSamples: [Double] = []
        var accepted = 0
        for _ in 0..<iterations {
            let start = base + 3600 * Int64.random(in: 0..<(horizon / 3600), using: &rng)
            let window = Interval(
                start: start.seconds, end: start.seconds + 3600 * Int64.random(in: 1...72, using: &rng))
            let request = ReservationRequest(hosts: Int64.random(in: 1...4, using: &rng))
            let t0 = nanos()
            if case .success = planner.place([request], window: window) { accepted += 1 }
            samples.append(Double(nanos() - t0) / 1000)
            let filtered = ReservationRequest(
                hosts: 2, properties: .equalities(["rack": .string("r\(Int.random(in: 0..<20, using: &rng))")]))
            let t1 = nanos()
            _ = planner.place([filtered], window: window)
            filterSamples.append(Double(nanos() - t1) / 1000)
        }
        let extra: [String: JSON] = ["allocations": .int(Int64(calendar.allocationCount))]
        report.add(
            "peer", "allocator: place 1-4 hosts", scale, Stats(samples: samples),
            extra: extra.merging(["accept_rate": .double(Double(accepted) / Double(max(1, iterations)))]) { a, _ in a })
        report.add("peer", "allocator: place 2 hosts, rack filter", scale, Stats(samples: filterSamples), extra: extra)
        var findSamples: [Double] = []
        for _ in 0..<min(iterations, 200) {
            let t0 = nanos()
            _ = planner.findWindows(
                [ReservationRequest(hosts: 4)], duration: 8 * 3600, earliest: base, latest: base + 30 * 86_400, limit: 5
            )
            findSamples.append(Double(nanos() - t0) / 1000)
        }
        report.add("peer", "allocator: findWindows 4 hosts x 8 h", scale, Stats(samples: findSamples), extra: extra)
        return (hosts, calendar)
    }

    /// Preemptibles on a legacy population: backfill, victim choice, two-pass placement.
    static func preemptibles(hosts: [Host], calendar: LeaseCalendar, scale: Scale, iterations: Int, report: Report) {
        var rng = SplitMix64(seed: 11)
        var cal = calendar
        var backfill: [Double] = []
        var placedPreemptibles: [Preemptible] = []
        let count = min(iterations, 2000)
        for i in 0..<count {
            let now = base + 60 * Int64(i)
            let size = InstanceSize(vcpus: Int64.random(in: 1...16, using: &rng), memoryMB: 4096, diskGB: 20)
            let window = Interval(start: now.seconds, end: now.seconds + 3600)
            let t0 = nanos()
            let r = PreemptionPlanner.backfill(
                size: size, gpuProfile: nil, window: window, hosts: hosts, calendar: cal, models: .builtIn)
            backfill.append(Double(nanos() - t0) / 1000)
            if case .success(let placement) = r {
                let p = Preemptible(
                    id: "p\(i)", projectID: "slurm", size: size, minLifetime: 3600, host: placement.host, createdAt: now
                )
                cal.add(p)
                placedPreemptibles.append(p)
            }
        }
        report.add(
            "preemptible", "preemptible: backfill (\(placedPreemptibles.count) placed)", scale, Stats(samples: backfill)
        )
        // Victim choice on the busiest hosts: every preemptible there against a whole-host reservation.
        var byHost: [String: [Preemptible]] = [:]
        for p in placedPreemptibles { byHost[p.host, default: []].append(p) }
        var planSamples: [Double] = []
        let busiest = byHost.sorted { ($0.value.count, $0.key) > ($1.value.count, $1.key) }.prefix(50)
        for (host, list) in busiest {
            let h = hosts.first { $0.name == host }!
            let holders =
                cal.reservationHolders(host: host, from: base.seconds + 7200).map {
                    PreemptionPlanner.Holder(interval: $0.interval, leaseID: $0.entry.leaseID, usage: $0.entry.usage)
                } + [
                    PreemptionPlanner.Holder(
                        interval: Interval(start: base.seconds + 86_400, end: base.seconds + 90_000), leaseID: "new",
                        usage: .instances(count: 1, vcpus: 48, memoryMB: 4096, diskGB: 20))
                ]
            let t0 = nanos()
            _ = PreemptionPlanner.plan(
                capacity: InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB), holders: holders,
                preemptibles: list.map(PreemptionPlanner.Holding.init), now: base.seconds + 7200, notice: 600)
            planSamples.append(Double(nanos() - t0) / 1000)
        }
        report.add(
            "preemptible", "preemptible: victim plan, busiest hosts (max \(busiest.first?.value.count ?? 0) on a host)",
            scale, Stats(samples: planSamples))
        // A reservation over preemptibles: the occupying view fails first, then the guaranteed-only one.
        var lenient = cal
        lenient.preemptibleView = .guaranteedOnly
        var twoPass: [Double] = []
        for _ in 0..<min(iterations, 500) {
            let start = base + 7200 + 3600 * Int64.random(in: 0..<(horizon / 3600), using: &rng)
            let window = Interval(
                start: start.seconds, end: start.seconds + 3600 * Int64.random(in: 1...72, using: &rng))
            let request = ReservationRequest(hosts: Int64.random(in: 1...4, using: &rng))
            let t0 = nanos()
            if case .failure = LeasePlanner(hosts: hosts, calendar: cal).place([request], window: window) {
                _ = LeasePlanner(hosts: hosts, calendar: lenient).place([request], window: window)
            }
            twoPass.append(Double(nanos() - t0) / 1000)
        }
        report.add("preemptible", "allocator: place 1-4 hosts among preemptibles", scale, Stats(samples: twoPass))
    }

    /// Placement quality: Berth's packing policy against plain first fit on the same trace.
    static func quality(report: Report) {
        let cloud = QualityTrace.cloud()
        var qualityRows: [JSON] = []
        print("")
        print("placement quality (12 CPU hosts + 4 hosts x 4 A100-40GB, 3 seeds x 3000 requests)")
        print(pad("kind", 12) + pad("packing", 20) + pad("first fit", 20) + "gain")
        var sums: [PlacementPolicy: [ReservationKind: (accepted: Int, total: Int)]] = [:]
        for seed in [1, 2, 3] as [UInt64] {
            let trace = QualityTrace.generate(seed: seed, count: 3000)
            for policy in [PlacementPolicy.packing, .firstFit] {
                for (k, v) in QualityTrace.replay(trace, hosts: cloud, policy: policy) {
                    let old = sums[policy]?[k] ?? (0, 0)
                    sums[policy, default: [:]][k] = (old.accepted + v.accepted, old.total + v.total)
                }
            }
        }
        var all: [PlacementPolicy: (Int, Int)] = [:]
        for kind in [ReservationKind.host, .instance, .gpu] {
            let p = sums[.packing]?[kind] ?? (0, 0)
            let f = sums[.firstFit]?[kind] ?? (0, 0)
            for (policy, v) in [(PlacementPolicy.packing, p), (.firstFit, f)] {
                let old = all[policy] ?? (0, 0)
                all[policy] = (old.0 + v.accepted, old.1 + v.total)
            }
            print(
                pad(kind.rawValue, 12) + pad("\(p.accepted)/\(p.total)", 20) + pad("\(f.accepted)/\(f.total)", 20)
                    + "\(p.accepted - f.accepted)")
            qualityRows.append([
                "kind": .string(kind.rawValue), "packing_accepted": .int(Int64(p.accepted)),
                "first_fit_accepted": .int(Int64(f.accepted)), "total": .int(Int64(p.total)),
            ])
        }
        let pa = all[.packing] ?? (0, 1), fa = all[.firstFit] ?? (0, 1)
        print(pad("all", 12) + pad("\(pa.0)/\(pa.1)", 20) + pad("\(fa.0)/\(fa.1)", 20) + "\(pa.0 - fa.0)")
        report.sections["quality"] = .array(qualityRows)
    }
}
