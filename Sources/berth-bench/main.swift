// berth-bench: a first benchmark of Berth (issue #2). Build in release (`make bench`).
//
// 1. Allocator alone, in process: LeasePlanner.place over a calendar of H hosts and L leases.
// 2. lease.create end to end over the Unix socket against a real berthd (durable: every reply
//    follows an fsync'd SQLite commit), one client.
// Prints a table and writes JSON (default bench-results.json). Timings are reported, never asserted.
import BerthClient
import BerthCore
import BerthJSON

#if canImport(Glibc)
    import Glibc
#endif


func nanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

struct Stats {
    var samples: [Double]  // microseconds
    var median: Double { percentile(0.5) }
    var p99: Double { percentile(0.99) }
    func percentile(_ p: Double) -> Double {
        let s = samples.sorted()
        guard !s.isEmpty else { return 0 }
        return s[min(s.count - 1, Int(Double(s.count - 1) * p))]
    }
}

func argument(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

let hostCount = Int(argument("--hosts") ?? "1000")!
let leaseCount = Int(argument("--leases") ?? "5000")!
let iterations = Int(argument("--iterations") ?? "2000")!
let outputPath = argument("--output") ?? "bench-results.json"
let berthdPath = argument("--berthd") ?? ".build/release/berthd"
let base = Timestamp(rfc3339: "2030-01-01T00:00:00Z")!
let horizon: Int64 = 60 * 86_400

var results: [String: JSON] = ["hosts": .int(Int64(hostCount)), "leases": .int(Int64(leaseCount))]
var rows: [(String, Stats)] = []

// MARK: 1. Allocator alone

@MainActor func buildPopulation() -> (hosts: [Host], calendar: LeaseCalendar) {
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
        let window = Interval(start: start.seconds, end: start.seconds + 3600 * Int64.random(in: 1...72, using: &rng))
        let planner = LeasePlanner(hosts: hosts, calendar: calendar)
        let request = ReservationRequest(hosts: Int64.random(in: 1...4, using: &rng))
        guard case .success(let allocs) = planner.place([request], window: window) else { continue }
        for a in allocs[0] {
            calendar.insert(host: a.host, interval: window, entry: CalendarEntry(leaseID: "l\(placed)", reservationID: "r\(placed)"))
        }
        placed += 1
    }
    return (hosts, calendar)
}

let setupStart = nanos()
let (hosts, calendar) = buildPopulation()
print("population: \(hostCount) hosts, \(leaseCount) leases, \(calendar.allocationCount) allocations (built in \(Double(nanos() - setupStart) / 1e9) s)")
do {
    var rng = SplitMix64(seed: 7)
    let planner = LeasePlanner(hosts: hosts, calendar: calendar)
    var samples: [Double] = []
    var filterSamples: [Double] = []
    var accepted = 0
    for _ in 0..<iterations {
        let start = base + 3600 * Int64.random(in: 0..<(horizon / 3600), using: &rng)
        let window = Interval(start: start.seconds, end: start.seconds + 3600 * Int64.random(in: 1...72, using: &rng))
        let request = ReservationRequest(hosts: Int64.random(in: 1...4, using: &rng))
        let t0 = nanos()
        if case .success = planner.place([request], window: window) { accepted += 1 }
        samples.append(Double(nanos() - t0) / 1000)
        let filtered = ReservationRequest(hosts: 2, properties: .equalities(["rack": .string("r\(Int.random(in: 0..<20, using: &rng))")]))
        let t1 = nanos()
        _ = planner.place([filtered], window: window)
        filterSamples.append(Double(nanos() - t1) / 1000)
    }
    rows.append(("allocator: place 1-4 hosts", Stats(samples: samples)))
    rows.append(("allocator: place 2 hosts, rack filter", Stats(samples: filterSamples)))
    var findSamples: [Double] = []
    for _ in 0..<min(iterations, 200) {
        let t0 = nanos()
        _ = planner.findWindows([ReservationRequest(hosts: 4)], duration: 8 * 3600, earliest: base, latest: base + 30 * 86_400, limit: 5)
        findSamples.append(Double(nanos() - t0) / 1000)
    }
    rows.append(("allocator: findWindows 4 hosts x 8 h", Stats(samples: findSamples)))
    results["allocator_accept_rate"] = .double(Double(accepted) / Double(iterations))
}

// MARK: 1b. Preemptibles: backfill placement and victim choice

do {
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
        let r = PreemptionPlanner.backfill(size: size, gpuProfile: nil, window: window, hosts: hosts, calendar: cal, models: .builtIn)
        backfill.append(Double(nanos() - t0) / 1000)
        if case .success(let placement) = r {
            let p = Preemptible(id: "p\(i)", projectID: "slurm", size: size, minLifetime: 3600, host: placement.host, createdAt: now)
            cal.add(p)
            placedPreemptibles.append(p)
        }
    }
    rows.append(("preemptible: backfill (\(placedPreemptibles.count) placed)", Stats(samples: backfill)))
    // Victim choice on the busiest hosts: every preemptible there against a whole-host reservation.
    var byHost: [String: [Preemptible]] = [:]
    for p in placedPreemptibles { byHost[p.host, default: []].append(p) }
    var planSamples: [Double] = []
    let busiest = byHost.sorted { ($0.value.count, $0.key) > ($1.value.count, $1.key) }.prefix(50)
    for (host, list) in busiest {
        let h = hosts.first { $0.name == host }!
        let holders = cal.reservationHolders(host: host, from: base.seconds + 7200).map {
            PreemptionPlanner.Holder(interval: $0.interval, leaseID: $0.entry.leaseID, usage: $0.entry.usage)
        } + [PreemptionPlanner.Holder(
            interval: Interval(start: base.seconds + 86_400, end: base.seconds + 90_000), leaseID: "new",
            usage: .instances(count: 1, vcpus: 48, memoryMB: 4096, diskGB: 20))]
        let t0 = nanos()
        _ = PreemptionPlanner.plan(
            capacity: InstanceSize(vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB), holders: holders,
            preemptibles: list.map(PreemptionPlanner.Holding.init), now: base.seconds + 7200, notice: 600)
        planSamples.append(Double(nanos() - t0) / 1000)
    }
    rows.append(("preemptible: victim plan, busiest hosts (max \(busiest.first?.value.count ?? 0) on a host)", Stats(samples: planSamples)))
    // A reservation over preemptibles: the occupying view fails first, then the guaranteed-only one.
    var lenient = cal
    lenient.preemptibleView = .guaranteedOnly
    var twoPass: [Double] = []
    for _ in 0..<min(iterations, 500) {
        let start = base + 7200 + 3600 * Int64.random(in: 0..<(horizon / 3600), using: &rng)
        let window = Interval(start: start.seconds, end: start.seconds + 3600 * Int64.random(in: 1...72, using: &rng))
        let request = ReservationRequest(hosts: Int64.random(in: 1...4, using: &rng))
        let t0 = nanos()
        if case .failure = LeasePlanner(hosts: hosts, calendar: cal).place([request], window: window) {
            _ = LeasePlanner(hosts: hosts, calendar: lenient).place([request], window: window)
        }
        twoPass.append(Double(nanos() - t0) / 1000)
    }
    rows.append(("allocator: place 1-4 hosts among preemptibles", Stats(samples: twoPass)))
}

// MARK: 2. lease.create over the socket against a real berthd

@MainActor func runDaemonBenchmark() throws {
    var template = Array("/tmp/berth-bench-XXXXXX".utf8CString)
    let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
    let socket = dir + "/berth.sock"
    var pid: pid_t = 0
    let argv = [berthdPath, "--socket", socket, "--state-dir", dir + "/state", "--clock", "manual", "--now", base.rfc3339, "--log-level", "warning"]
    var cargs = argv.map { strdup($0) } + [nil]
    guard posix_spawn(&pid, berthdPath, nil, nil, &cargs, environ) == 0 else {
        print("cannot start \(berthdPath); build it with `swift build -c release --product berthd`")
        return
    }
    defer {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
    var conn: BerthConnection? = nil
    let deadline = nanos() + 30_000_000_000
    while conn == nil && nanos() < deadline {
        conn = try? BerthConnection(socketPath: socket)
        if conn == nil { usleep(20_000) }  // waiting for the daemon to start listening, not timing anything
    }
    guard let c = conn else { print("berthd did not start listening"); return }
    // Inventory and background leases, pipelined in chunks.
    var calls: [(String, JSON?)] = []
    for h in hosts { calls.append(("host.create", ["name": .string(h.name), "vcpus": 64, "memory_mb": 262_144, "disk_gb": 960])) }
    for chunk in stride(from: 0, to: calls.count, by: 500) { _ = try c.pipeline(Array(calls[chunk..<min(calls.count, chunk + 500)])) }
    var rng = SplitMix64(seed: 99)
    func randomLease() -> JSON {
        let start = base + 3600 * Int64.random(in: 1..<(horizon / 3600), using: &rng)
        let end = start + 3600 * Int64.random(in: 1...72, using: &rng)
        return [
            "name": "bench", "project_id": "bench", "start": .string(start.rfc3339), "end": .string(end.rfc3339),
            "reservations": [["kind": "host", "count": .int(Int64.random(in: 1...4, using: &rng))]],
        ]
    }
    let fillStart = nanos()
    var created = 0
    while created < leaseCount {
        let batch = (0..<min(500, leaseCount - created)).map { _ in ("lease.create", Optional(randomLease())) }
        created += try c.pipeline(batch).filter { if case .success = $0 { return true } else { return false } }.count
    }
    let fillSeconds = Double(nanos() - fillStart) / 1e9
    results["socket_fill_leases_per_s"] = .double(Double(leaseCount) / fillSeconds)
    var samples: [Double] = []
    var ids: [String] = []
    for _ in 0..<min(iterations, 1000) {
        let p = randomLease()
        let t0 = nanos()
        let r = try? c.call("lease.create", p)
        samples.append(Double(nanos() - t0) / 1000)
        if let id = r?["id"]?.stringValue { ids.append(id) }
    }
    rows.append(("socket: lease.create (durable, 1 client)", Stats(samples: samples)))
    var gets: [Double] = []
    for i in 0..<min(iterations, 2000) where !ids.isEmpty {
        let t0 = nanos()
        _ = try c.call("lease.get", ["id": .string(ids[i % ids.count])])
        gets.append(Double(nanos() - t0) / 1000)
    }
    rows.append(("socket: lease.get (1 client)", Stats(samples: gets)))
    var echo: [Double] = []
    for _ in 0..<min(iterations, 2000) {
        let t0 = nanos()
        _ = try c.call("system.health")
        echo.append(Double(nanos() - t0) / 1000)
    }
    rows.append(("socket: system.health round trip", Stats(samples: echo)))
    c.close()
}

// MARK: 3. Placement quality: Berth's packing policy against plain first fit, same trace

do {
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
        print(pad(kind.rawValue, 12) + pad("\(p.accepted)/\(p.total)", 20) + pad("\(f.accepted)/\(f.total)", 20) + "\(p.accepted - f.accepted)")
        qualityRows.append(["kind": .string(kind.rawValue), "packing_accepted": .int(Int64(p.accepted)), "first_fit_accepted": .int(Int64(f.accepted)), "total": .int(Int64(p.total))])
    }
    let pa = all[.packing] ?? (0, 1), fa = all[.firstFit] ?? (0, 1)
    print(pad("all", 12) + pad("\(pa.0)/\(pa.1)", 20) + pad("\(fa.0)/\(fa.1)", 20) + "\(pa.0 - fa.0)")
    results["quality"] = .array(qualityRows)
}

if !CommandLine.arguments.contains("--allocator-only") {
    do { try runDaemonBenchmark() } catch { print("daemon benchmark failed: \(error)") }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }

func fmt(_ v: Double) -> String {
    let s = String(Int((v * 10).rounded()))
    let whole = s.dropLast().isEmpty ? "0" : String(s.dropLast())
    return "\(whole).\(s.last!)"
}

print("")
print(pad("benchmark", 44) + pad("median µs", 12) + "p99 µs")
var table: [JSON] = []
for (name, st) in rows {
    print(pad(name, 44) + pad(fmt(st.median), 12) + fmt(st.p99))
    table.append(["name": .string(name), "median_us": .double(st.median), "p99_us": .double(st.p99), "samples": .int(Int64(st.samples.count))])
}
results["results"] = .array(table)
if let f = fopen(outputPath, "w") {
    fputs(JSON.object(results).prettyPrinted() + "\n", f)
    fclose(f)
    print("\nwrote \(outputPath)")
}
