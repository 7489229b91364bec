import BerthCore
import BerthJSON
import BerthTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Section 1: the allocator alone, in process, on the mixed population at each scale, and the
/// sweep of leases at fixed hosts (the curve).
struct AllocatorSuite {
    let options: Options
    let report: Report

    struct Point {
        var scale: Scale
        var allocations: Int
        var medians: [String: Double]
    }

    func runAll() -> [Point] {
        var points: [Point] = []
        print("\n== allocator alone (in process), mixed population: 1 host in \(Mixed.gpuEvery) has 4 × A100-40GB ==")
        for s in options.scales { points.append(run(scale: s, section: "allocator", findWindows: true)) }
        var curve: [Point] = []
        if !options.curveLeases.isEmpty {
            print("\n== allocator cost against leases at \(options.curveHosts) hosts (the curve) ==")
            for l in options.curveLeases {
                let s = Scale(hosts: options.curveHosts, leases: l)
                if let p = points.first(where: { $0.scale.hosts == s.hosts && $0.scale.leases == s.leases }) {
                    curve.append(p)
                    print("  (\(s) already measured above)")
                } else {
                    curve.append(
                        run(
                            scale: s, section: "allocator-curve", findWindows: true,
                            iterationCap: min(options.iterations, 500)))
                }
            }
        }
        printCurve("allocator medians by scale (µs)", points)
        if !curve.isEmpty { printCurve("allocator medians at \(options.curveHosts) hosts, leases growing (µs)", curve) }
        report.sections["allocator_curve"] = .array(
            (points
                + curve.filter { c in
                    !points.contains { $0.scale.hosts == c.scale.hosts && $0.scale.leases == c.scale.leases }
                }).map { p in
                    var o: [String: JSON] = [
                        "hosts": .int(Int64(p.scale.hosts)), "leases": .int(Int64(p.scale.leases)),
                        "allocations": .int(Int64(p.allocations)),
                    ]
                    for (k, v) in p.medians { o["\(k)_median_us"] = .double(round3(v)) }
                    return .object(o)
                })
        return points
    }

    func printCurve(_ title: String, _ pts: [Point]) {
        print("\n\(title)")
        print(
            pad("hosts", 8) + pad("leases", 10) + pad("allocs", 10) + pad("host", 11) + pad("gpu", 11)
                + pad("instance", 11) + pad("findWindows", 13) + "host µs per 1k hosts")
        for p in pts {
            let h = p.medians["host"] ?? .nan
            print(
                pad(fmt0(Double(p.scale.hosts)), 8) + pad(fmt0(Double(p.scale.leases)), 10)
                    + pad(fmt0(Double(p.allocations)), 10)
                    + pad(fmt(h), 11) + pad(fmt(p.medians["gpu"] ?? .nan), 11)
                    + pad(fmt(p.medians["instance"] ?? .nan), 11)
                    + pad(fmt(p.medians["findWindows"] ?? .nan), 13) + fmt(h / Double(p.scale.hosts) * 1000))
        }
    }

    func run(scale: Scale, section: String, findWindows: Bool, iterationCap: Int? = nil) -> Point {
        let t0 = nanos()
        let hosts = Mixed.hosts(scale.hosts)
        var gen = Mixed.Generator(hosts: hosts, seed: 42)
        let hours = Mixed.horizonHours(hosts: scale.hosts, leases: scale.leases)
        _ = gen.generate(count: scale.leases, fromHour: 0, hours: hours, keep: false)
        let built = seconds(since: t0)
        let calendar = gen.calendar
        let allocs = calendar.allocationCount
        print(
            "population \(scale): \(gen.placed) leases, \(allocs) allocations over \(hours / 24) days, "
                + "\(gen.failedAttempts) draws found no room (built in \(fmt(built)) s)")
        report.sections["population_\(scale)"] = [
            "hosts": .int(Int64(scale.hosts)), "leases": .int(Int64(gen.placed)), "allocations": .int(Int64(allocs)),
            "horizon_days": .int(hours / 24), "build_s": .double(round3(built)),
        ]
        let planner = LeasePlanner(hosts: hosts, calendar: calendar)
        let n = min(options.iterations, iterationCap ?? Int.max)
        var medians: [String: Double] = [:]
        for (k, kind) in Mixed.Kind.allCases.enumerated() where options.allocatorKinds.contains(kind.rawValue) {
            var rng = SplitMix64(seed: 7 + UInt64(k))
            var samples: [Double] = []
            var accepted = 0
            let deadline = nanos() + UInt64(options.rowBudget * 1e9)
            for i in 0..<n {
                if i >= 20 && nanos() > deadline { break }
                let request = Mixed.benchRequest(kind, &rng)
                let start = Mixed.base.seconds + 3600 * Int64.random(in: 0..<hours, using: &rng)
                let window = Interval(start: start, end: start + 3600 * Int64.random(in: 1...72, using: &rng))
                let t = nanos()
                let ok = timedPlace(planner, request, window)
                samples.append(Double(nanos() - t) / 1000)
                if ok { accepted += 1 }
            }
            let what: String
            switch kind {
            case .host: what = "place 1-4 hosts"
            case .gpu: what = "place GPU slices (1g.5gb/3g.20gb x 1-4)"
            case .instance: what = "place instances (1-8 vCPUs x 1-8)"
            }
            let st = Stats(samples: samples)
            report.add(
                section, "allocator (mixed): \(what)", scale, st,
                extra: [
                    "kind": .string(kind.rawValue), "accepted": .int(Int64(accepted)),
                    "allocations": .int(Int64(allocs)),
                ])
            medians[kind.rawValue] = st.median
        }
        if findWindows && options.allocatorKinds.contains("find") {
            var rng = SplitMix64(seed: 5)
            var samples: [Double] = []
            var found = 0
            let deadline = nanos() + UInt64(options.rowBudget * 1e9)
            let span = max(1, hours - 30 * 24)
            for i in 0..<min(n, 200) {
                if i >= 10 && nanos() > deadline { break }
                let earliest = Mixed.base + 3600 * Int64.random(in: 0..<span, using: &rng)
                let t = nanos()
                let w = timedFindWindows(planner, earliest)
                samples.append(Double(nanos() - t) / 1000)
                found += w.count
            }
            let st = Stats(samples: samples)
            report.add(
                section, "allocator (mixed): findWindows 4 hosts x 8 h in 30 days", scale, st,
                extra: ["windows_found": .int(Int64(found)), "allocations": .int(Int64(allocs))])
            medians["findWindows"] = st.median
        }
        return Point(scale: scale, allocations: allocs, medians: medians)
    }
}

// Not inlined, so that a profiler can collect exactly the timed calls:
// valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*timedPlace*' berth-bench --allocator-only ...
@inline(never)
func timedPlace(_ planner: LeasePlanner, _ request: ReservationRequest, _ window: Interval) -> Bool {
    if case .success = planner.place([request], window: window) { return true }
    return false
}

@inline(never)
func timedFindWindows(_ planner: LeasePlanner, _ earliest: Timestamp) -> [Interval] {
    planner.findWindows(
        [ReservationRequest(hosts: 4)], duration: 8 * 3600, earliest: earliest, latest: earliest + 30 * 86_400, limit: 5
    )
}
