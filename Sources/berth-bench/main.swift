// berth-bench: Berth's benchmark suite. Build in release (`make bench`).
//
// 1. Allocator alone, in process: LeasePlanner.place (host, GPU-slice and instance requests) and
//    findWindows on a mixed population (1 host in 10 with 4 × A100-40GB) at several scales, plus
//    the cost against leases at fixed hosts (AllocatorSuite). The first bench's host-only
//    population ("peer set", replayed against Blazar by benchmarks/peers/blazar), preemptibles
//    and placement quality are kept (PeerSet).
// 2. Over the Unix socket against a real berthd: lease.create durable from 1 and 16 clients,
//    availability.find at 100,000 leases, lease.get throughput, and a raw echo server as the
//    physical floor (SocketSuite).
// 3. Restart time and resident memory with up to 1,000,000 allocations (RestartSuite).
// Prints tables and writes JSON (default bench-results.json). Timings are reported, never asserted.
import BerthCore
import BerthJSON

#if canImport(Glibc)
    import Glibc
#endif

signal(SIGPIPE, SIG_IGN)
let options = Options.parse(CommandLine.arguments)
let report = Report()
if let dir = options.restartPhasesDir {
    RestartPhases.run(directory: dir, report: report)
    exit(0)
}
let started = nanos()
report.sections["machine"] = .object(machineDescription())
report.sections["mode"] = .string(options.quick ? "quick" : "full")
report.sections["unix_time"] = .int(Int64(time(nil)))
report.sections["options"] = [
    "scales": .array(options.scales.map { .string($0.description) }),
    "peer_scales": .array(options.peerScales.map { .string($0.description) }),
    "curve_hosts": .int(Int64(options.curveHosts)), "curve_leases": .array(options.curveLeases.map { .int(Int64($0)) }),
    "iterations": .int(Int64(options.iterations)), "row_budget_s": .double(options.rowBudget),
    "socket_hosts": .int(Int64(options.socketHosts)), "socket_leases": .int(Int64(options.socketLeases)),
    "find_leases": .int(Int64(options.findLeases)), "clients": .int(Int64(options.clients)),
    "in_flight": .int(Int64(options.inFlight)),
    "restart_hosts": .int(Int64(options.restartHosts)), "restart_allocations": .int(Int64(options.restartAllocations)),
    "restart_lease_hosts": .int(Int64(options.restartLeaseHosts)),
    "restart_load_budget_s": .double(options.restartLoadBudget),
]
print(
    "berth-bench (\(options.quick ? "quick" : "full") run) on \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs; timings are medians and p99 of samples, never asserted"
)

// MARK: 1. Allocator

let allocatorPoints = AllocatorSuite(options: options, report: report).runAll()

if !options.peerScales.isEmpty {
    print("\n== allocator alone, the first bench's host-only population (the Blazar comparison's) ==")
    var last: (hosts: [Host], calendar: LeaseCalendar, scale: Scale)? = nil
    for s in options.peerScales {
        let (h, c) = PeerSet.run(scale: s, iterations: options.iterations, report: report)
        last = (h, c, s)
    }
    if let last {
        report.sections["hosts"] = .int(Int64(last.scale.hosts))
        report.sections["leases"] = .int(Int64(last.scale.leases))
        if let rate = report.row("peer", "allocator: place 1-4 hosts", scale: last.scale)?.extra["accept_rate"] {
            report.sections["allocator_accept_rate"] = rate
        }
        print("\n== preemptibles, on the \(last.scale) host-only population ==")
        PeerSet.preemptibles(
            hosts: last.hosts, calendar: last.calendar, scale: last.scale, iterations: options.iterations,
            report: report)
    }
}

if !options.skipQuality { PeerSet.quality(report: report) }

// MARK: 2, 3. Over the socket, restart

if !options.allocatorOnly {
    var st = stat()
    if stat(options.berthd, &st) != 0 {
        print(
            "\n\(options.berthd) not found: build it with `swift build -c release --product berthd` (socket sections skipped)"
        )
    } else {
        if !options.skipSocket { SocketSuite(options: options, report: report).run() }
        if !options.skipRestart { RestartSuite(options: options, report: report).run() }
    }
}

// MARK: Tables

print("\n== all timings ==")
print(pad("benchmark", 74) + pad("scale", 16) + lpad("median", 11) + lpad("p99", 11) + lpad("n", 7))
var lastSection = ""
for r in report.rows {
    if r.section != lastSection {
        print("[\(r.section)]")
        lastSection = r.section
    }
    print(
        pad(r.name, 74) + pad(r.scale.map { "\($0.hosts)/\($0.leases)" } ?? "", 16) + lpad(fmtUS(r.stats.median), 11)
            + lpad(fmtUS(r.stats.p99), 11) + lpad(String(r.stats.samples.count), 7))
}
print("\n== values ==")
lastSection = ""
for v in report.values {
    if v.section != lastSection {
        print("[\(v.section)]")
        lastSection = v.section
    }
    print(pad(v.name, 84) + lpad(fmtValue(v.value, v.unit), 16) + (v.note.map { "  \($0)" } ?? ""))
}

// MARK: Targets: reported, never asserted

struct TargetLine {
    var target: String
    var measured: String
    var status: String
    var value: Double? = nil
    var limit: Double? = nil
    var at: String = ""
}

var targets: [TargetLine] = []
/// `atTarget`: whether the measurement was taken at the scale the target names (quick runs are not).
func judge(
    _ target: String, _ value: Double?, limit: Double, higherIsBetter: Bool, show: (Double) -> String, at: String = "",
    atTarget: Bool = true
) -> TargetLine {
    guard let v = value, v.isFinite else {
        return TargetLine(target: target, measured: "not measured", status: "-", limit: limit)
    }
    let met = higherIsBetter ? v >= limit : v <= limit
    let factor = higherIsBetter ? limit / v : v / limit
    let factorText = factor < 10 ? fmt2(factor) : fmt(factor)
    var status = met ? "met" : "MISSED (\(factorText)x \(higherIsBetter ? "short" : "over"))"
    if !atTarget { status += ", not at the target's scale" }
    return TargetLine(
        target: target, measured: show(v) + (at.isEmpty ? "" : " (at \(at))"), status: status, value: v, limit: limit,
        at: at)
}

let big = Scale(hosts: 10_000, leases: 100_000)
for (kind, name) in [
    ("host", "allocator (mixed): place 1-4 hosts"),
    ("gpu", "allocator (mixed): place GPU slices (1g.5gb/3g.20gb x 1-4)"),
    ("instance", "allocator (mixed): place instances (1-8 vCPUs x 1-8)"),
] {
    let row = report.row("allocator", name, scale: big)
    targets.append(
        judge(
            "allocator (\(kind)) <= 50 µs median at 10,000 hosts / 100,000 leases", row?.stats.median, limit: 50,
            higherIsBetter: false, show: fmtUS))
}
if let p = allocatorPoints.first(where: { $0.scale.hosts == big.hosts && $0.scale.leases == big.leases }),
    let f = p.medians["findWindows"]
{
    targets.append(
        TargetLine(
            target: "(no target) allocator findWindows 4 hosts x 8 h at 10,000 / 100,000", measured: fmtUS(f),
            status: "-", value: f))
}
func scaleText(_ s: Scale?) -> String { s.map { "\(fmt0(Double($0.hosts))) / \(fmt0(Double($0.leases)))" } ?? "" }
let createRow = report.row("socket", "lease.create 1-4 hosts, durable, 1 client")
targets.append(
    judge(
        "lease.create durable <= 2 ms median, 1 client, at 1,000 / 5,000", createRow?.stats.median, limit: 2000,
        higherIsBetter: false, show: fmtUS,
        at: scaleText(createRow?.scale),
        atTarget: createRow?.scale?.hosts == 1000 && (createRow?.scale?.leases ?? 0) >= 5000))
targets.append(
    judge(
        "lease.create durable >= 2,000/s with \(options.clients) clients",
        report.valueOf("socket", "lease.create, \(options.clients) concurrent clients: throughput"), limit: 2000,
        higherIsBetter: true, show: { "\(fmt0($0))/s" },
        at: scaleText(createRow?.scale), atTarget: options.clients == 16 && createRow?.scale?.hosts == 1000))
let findRow = report.row("socket", "availability.find 4 hosts x 8 h in 30 days")
targets.append(
    judge(
        "availability.find <= 10 ms median at 1,000 hosts / 100,000 leases", findRow?.stats.median, limit: 10_000,
        higherIsBetter: false, show: fmtUS,
        at: scaleText(findRow?.scale),
        atTarget: findRow?.scale?.hosts == 1000 && (findRow?.scale?.leases ?? 0) >= 99_000))
let getBest = [1, options.clients].compactMap {
    report.valueOf(
        "socket", "lease.get throughput, \($0) connection\($0 == 1 ? "" : "s"), \(options.inFlight) in flight each")
}.filter(\.isFinite).max()
targets.append(
    judge(
        "lease.get >= 50,000/s (best of 1 and \(options.clients) connections, \(options.inFlight) in flight)", getBest,
        limit: 50_000, higherIsBetter: true, show: { "\(fmt0($0))/s" }))
targets.append(
    judge(
        "lease.get round trip within 3x of the raw echo round trip",
        report.valueOf("socket", "lease.get / echo round trip (median)"), limit: 3,
        higherIsBetter: false, show: { "\(fmt($0))x" }))
for label in ["same CPU", "two CPUs"] {
    if let r = report.valueOf("socket", "lease.get / echo round trip pinned to \(label) (median)") {
        targets.append(
            TargetLine(
                target: "(same target, echo client and server pinned to \(label))", measured: "\(fmt(r))x", status: "-",
                value: r))
    }
}
let restartPop = report.sections["restart_population"]
let restartAllocs = restartPop?["allocations"]?.intValue.map(Double.init)
let restartAt =
    restartAllocs.map { "\(fmt0($0)) allocations, \(restartPop?["lease_hosts"]?.intValue ?? 0)-host leases" } ?? ""
let restartFull = (restartAllocs ?? 0) >= 1_000_000
let restartUp = report.values.last {
    $0.section == "restart" && $0.name.hasPrefix("restart to system.health, ") && !$0.name.contains("baseline")
}?.value
targets.append(
    judge(
        "restart <= 3 s at 1,000,000 allocations", restartUp, limit: 3, higherIsBetter: false, show: { "\(fmt($0)) s" },
        at: restartAt, atTarget: restartFull))
targets.append(
    judge(
        "<= 1 KiB resident per allocation at 1,000,000 allocations (VmRSS / allocations)",
        report.valueOf("restart", "VmRSS per allocation after restart, gross (VmRSS / allocations)"), limit: 1024,
        higherIsBetter: false,
        show: { "\(fmt0($0)) bytes" }, at: restartAt, atTarget: restartFull))
if let sp = report.sections["socket_population"],
    let up = report.values.last(where: { $0.section == "socket" && $0.name.hasPrefix("restart to system.health") })?
        .value,
    let per = report.valueOf("socket", "VmRSS per allocation after restart, gross")
{
    let at =
        "\(fmt0(Double(sp["allocations"]?.intValue ?? 0))) allocations in \(fmt0(Double(sp["leases"]?.intValue ?? 0))) mixed leases"
    targets.append(
        TargetLine(
            target: "(same targets, mixed population) restart time", measured: "\(fmt(up)) s (at \(at))", status: "-",
            value: up, at: at))
    targets.append(
        TargetLine(
            target: "(same targets, mixed population) VmRSS per allocation", measured: "\(fmt0(per)) bytes (at \(at))",
            status: "-", value: per, at: at))
}

print("\n== performance targets (median, this machine; reported, never asserted) ==")
for t in targets { print(pad(t.target, 86) + pad(t.measured, 52) + t.status) }
report.sections["targets"] = .array(
    targets.map { t in
        var o: [String: JSON] = [
            "target": .string(t.target), "measured": .string(t.measured), "status": .string(t.status),
        ]
        if let v = t.value { o["value"] = .double(round3(v)) }
        if let l = t.limit { o["limit"] = .double(l) }
        if !t.at.isEmpty { o["at"] = .string(t.at) }
        return .object(o)
    })

let total = seconds(since: started)
report.sections["total_s"] = .double(round3(total))
print("\nfinished in \(fmt(total)) s")
if writeFile(options.output, report.json.prettyPrinted() + "\n") {
    print("wrote \(options.output)")
} else {
    print("cannot write \(options.output)")
}
