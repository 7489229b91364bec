// Shared helpers of berth-bench: clocks, statistics, options, the report, threads and processes.
import BerthJSON
import BerthTestSupport

#if canImport(Glibc)
    import Glibc
#endif

func nanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func seconds(since t0: UInt64) -> Double { Double(nanos() - t0) / 1e9 }

struct Stats {
    var samples: [Double]  // microseconds
    var median: Double { percentile(0.5) }
    var p99: Double { percentile(0.99) }
    /// Nearest rank below (the Blazar comparison script uses the same rule).
    func percentile(_ p: Double) -> Double {
        let s = samples.sorted()
        guard !s.isEmpty else { return 0 }
        return s[min(s.count - 1, Int(Double(s.count - 1) * p))]
    }
}

// MARK: - Options

struct Scale: CustomStringConvertible {
    var hosts: Int
    var leases: Int
    var description: String { "\(hosts)x\(leases)" }

    static func parseList(_ text: String) -> [Scale]? {
        var out: [Scale] = []
        for part in text.split(separator: ",") {
            let hl = part.split(separator: "x")
            guard hl.count == 2, let h = Int(hl[0]), let l = Int(hl[1]), h > 0, l >= 0 else { return nil }
            out.append(Scale(hosts: h, leases: l))
        }
        return out.isEmpty ? nil : out
    }
}

struct Options {
    var quick = false
    var allocatorOnly = false
    /// Allocator scales of the mixed population (hosts x leases).
    var scales: [Scale] = []
    /// Scales of the legacy host-only population (the one benchmarks/peers/blazar replays).
    var peerScales: [Scale] = []
    var iterations = 2000
    /// Upper bound on the time spent on one allocator row; the sample count is reported.
    var rowBudget = 8.0
    /// The 1,000-host lease sweep (allocator cost against the number of leases at fixed hosts).
    var curveHosts = 1000
    var curveLeases: [Int] = [1000, 5000, 20_000, 100_000]
    /// Which allocator rows to run (for profiling one of them): host, gpu, instance, find.
    var allocatorKinds: Set<String> = ["host", "gpu", "instance", "find"]
    var output = "bench-results.json"
    var berthd = ".build/release/berthd"
    // Socket section
    var socketHosts = 1000
    var socketLeases = 5000
    var findLeases = 100_000
    var clients = 16
    var createSamples = 1000
    var createPerClient = 100
    var findSamples = 200
    var getRequests = 50_000
    var inFlight = 64
    // Restart section
    var restartHosts = 10_000
    var restartAllocations = 1_000_000
    var restartLeaseHosts = 10
    var restartLoadBudget = 600.0
    var restarts = 3
    var skipRestart = false
    var skipSocket = false
    var keepState = false
    var skipQuality = false
    /// A kept restart state (`--keep-state`): time the restart's phases in process, then exit.
    var restartPhasesDir: String?

    static func parse(_ args: [String]) -> Options {
        func value(_ name: String) -> String? {
            guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
            return args[i + 1]
        }
        func int(_ name: String) -> Int? {
            guard let v = value(name) else { return nil }
            guard let n = Int(v.replacingUnderscores) else { fail("\(name) expects an integer, got '\(v)'") }
            return n
        }
        func double(_ name: String) -> Double? {
            guard let v = value(name) else { return nil }
            guard let n = Double(v) else { fail("\(name) expects a number, got '\(v)'") }
            return n
        }
        if args.contains("--help") || args.contains("-h") {
            print(usage)
            exit(0)
        }
        var o = Options()
        o.quick = args.contains("--quick")
        o.allocatorOnly = args.contains("--allocator-only")
        o.skipRestart = args.contains("--skip-restart")
        o.skipSocket = args.contains("--skip-socket")
        o.keepState = args.contains("--keep-state")
        o.skipQuality = args.contains("--skip-quality")
        if o.quick {
            o.scales = [Scale(hosts: 100, leases: 1000), Scale(hosts: 1000, leases: 5000)]
            o.peerScales = [Scale(hosts: 100, leases: 1000)]
            o.iterations = 200
            o.rowBudget = 1
            o.curveLeases = [1000, 5000]
            o.socketHosts = 100
            o.socketLeases = 1000
            o.findLeases = 5000
            o.clients = 16
            o.createSamples = 100
            o.createPerClient = 10
            o.findSamples = 20
            o.getRequests = 5000
            o.restartHosts = 1000
            o.restartAllocations = 20_000
            o.restartLoadBudget = 60
            o.restarts = 1
        } else {
            o.scales = [
                Scale(hosts: 100, leases: 1000), Scale(hosts: 1000, leases: 5000),
                Scale(hosts: 10_000, leases: 100_000),
            ]
            o.peerScales = [Scale(hosts: 100, leases: 1000), Scale(hosts: 1000, leases: 5000)]
        }
        let h = int("--hosts"), l = int("--leases")
        if h != nil || l != nil {
            // One scale, as before: the mixed suite and the legacy (peer) population both use it.
            let one = Scale(hosts: h ?? 1000, leases: l ?? 5000)
            o.scales = [one]
            o.peerScales = [one]
            o.curveLeases = []  // a one-scale run (benchmarks/peers/blazar/compare.py); --curve brings it back
        }
        if let s = value("--scales"), s == "none" {
            o.scales = []
        } else if let s = value("--scales") {
            guard let list = Scale.parseList(s) else {
                fail("--scales expects HOSTSxLEASES[,...], e.g. 100x1000,1000x5000")
            }
            o.scales = list
        }
        if let s = value("--peer-scales") {
            if s == "none" {
                o.peerScales = []
            } else {
                guard let list = Scale.parseList(s) else { fail("--peer-scales expects HOSTSxLEASES[,...] or none") }
                o.peerScales = list
            }
        }
        if let s = value("--curve") {
            if s == "none" {
                o.curveLeases = []
            } else {
                let parts = s.split(separator: "x")
                guard parts.count == 2, let ch = Int(parts[0]) else {
                    fail("--curve expects HOSTSxL1:L2:..., e.g. 1000x1000:5000:20000")
                }
                let ls = parts[1].split(separator: ":").compactMap { Int($0) }
                guard !ls.isEmpty else { fail("--curve expects HOSTSxL1:L2:...") }
                o.curveHosts = ch
                o.curveLeases = ls
            }
        }
        if let k = value("--allocator-kinds") { o.allocatorKinds = Set(k.split(separator: ",").map(String.init)) }
        o.iterations = int("--iterations") ?? o.iterations
        o.rowBudget = double("--row-budget") ?? o.rowBudget
        o.output = value("--output") ?? o.output
        o.berthd = value("--berthd") ?? o.berthd
        o.socketHosts = int("--socket-hosts") ?? o.socketHosts
        o.socketLeases = int("--socket-leases") ?? o.socketLeases
        o.findLeases = int("--find-leases") ?? o.findLeases
        o.clients = int("--clients") ?? o.clients
        o.createSamples = int("--create-samples") ?? o.createSamples
        o.createPerClient = int("--create-per-client") ?? o.createPerClient
        o.findSamples = int("--find-samples") ?? o.findSamples
        o.getRequests = int("--get-requests") ?? o.getRequests
        o.inFlight = int("--in-flight") ?? o.inFlight
        o.restartHosts = int("--restart-hosts") ?? o.restartHosts
        o.restartAllocations = int("--restart-allocations") ?? o.restartAllocations
        o.restartLeaseHosts = int("--restart-lease-hosts") ?? o.restartLeaseHosts
        o.restartLoadBudget = double("--restart-load-budget") ?? o.restartLoadBudget
        o.restarts = max(1, int("--restarts") ?? o.restarts)
        o.restartPhasesDir = value("--restart-phases")
        return o
    }

    static let usage = """
        berth-bench: Berth's benchmark suite. Build in release: `make bench`.

          --quick                      small smoke run (seconds to a minute)
          --scales HxL[,HxL...]|none   allocator populations (default 100x1000,1000x5000,10000x100000)
          --hosts H --leases L         one scale for the allocator and the legacy peer population
          --peer-scales HxL[,..]|none  legacy host-only populations (what benchmarks/peers/blazar replays)
          --curve HxL1:L2:..|none      allocator cost against leases at fixed hosts (default 1000x1000:5000:20000:100000)
          --iterations N               samples per allocator row (default 2000; capped by --row-budget seconds)
          --allocator-only             in-process sections only (no berthd)
          --allocator-kinds host,gpu,instance,find   allocator rows to run (e.g. one, under callgrind)
          --skip-socket, --skip-restart, --skip-quality
          --berthd PATH                release berthd (default .build/release/berthd)
          --output FILE                JSON with every number (default bench-results.json)
          --socket-hosts 1000 --socket-leases 5000 --find-leases 100000 --clients 16
          --create-samples 1000 --create-per-client 100 --find-samples 200 --get-requests 50000 --in-flight 64
          --restart-hosts 10000 --restart-allocations 1000000 --restart-lease-hosts 10
          --restart-load-budget SECONDS (default 600) --restarts 3 --keep-state
          --restart-phases DIR         only this: a kept restart state's loading phases in process (loadSnapshot,
                                       calendar by inserts vs bulk-built), DIR holding berth.sqlite
        """
}

extension String {
    var replacingUnderscores: String { String(filter { $0 != "_" && $0 != "," }) }
}

func fail(_ message: String) -> Never {
    let line = Array("berth-bench: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

// MARK: - Report

/// Everything measured: timing rows (median/p99 of samples) and single values (throughputs,
/// times, sizes). Printed as tables and written as JSON.
final class Report {
    struct Row {
        var section: String
        var name: String
        var scale: Scale?
        var stats: Stats
        var extra: [String: JSON] = [:]
    }
    struct Value {
        var section: String
        var name: String
        var value: Double
        var unit: String
        var note: String?
    }
    var rows: [Row] = []
    var values: [Value] = []
    var sections: [String: JSON] = [:]

    func add(_ section: String, _ name: String, _ scale: Scale? = nil, _ stats: Stats, extra: [String: JSON] = [:]) {
        rows.append(Row(section: section, name: name, scale: scale, stats: stats, extra: extra))
        let s = scale.map { " @ \($0.hosts) hosts / \($0.leases) leases" } ?? ""
        print(
            "  \(pad(name + s, 70)) median \(pad(fmtUS(stats.median), 10)) p99 \(pad(fmtUS(stats.p99), 10)) (\(stats.samples.count) samples)"
        )
        fflush(nil)
    }

    func value(_ section: String, _ name: String, _ v: Double, _ unit: String, note: String? = nil) {
        values.append(Value(section: section, name: name, value: v, unit: unit, note: note))
        print("  \(pad(name, 70)) \(fmtValue(v, unit))\(note.map { "  (\($0))" } ?? "")")
        fflush(nil)
    }

    func row(_ section: String, _ name: String, scale: Scale? = nil) -> Row? {
        rows.last {
            $0.section == section && $0.name == name
                && (scale == nil || ($0.scale?.hosts == scale!.hosts && $0.scale?.leases == scale!.leases))
        }
    }

    func valueOf(_ section: String, _ name: String) -> Double? {
        values.last { $0.section == section && $0.name == name }?.value
    }

    var json: JSON {
        var rowsJSON: [JSON] = []
        for r in rows {
            var o: [String: JSON] = [
                "section": .string(r.section), "name": .string(r.name), "median_us": .double(round3(r.stats.median)),
                "p99_us": .double(round3(r.stats.p99)), "samples": .int(Int64(r.stats.samples.count)),
            ]
            if let s = r.scale {
                o["hosts"] = .int(Int64(s.hosts))
                o["leases"] = .int(Int64(s.leases))
            }
            for (k, v) in r.extra { o[k] = v }
            rowsJSON.append(.object(o))
        }
        var valuesJSON: [JSON] = []
        for v in values {
            var o: [String: JSON] = [
                "section": .string(v.section), "name": .string(v.name), "value": .double(round3(v.value)),
                "unit": .string(v.unit),
            ]
            if let n = v.note { o["note"] = .string(n) }
            valuesJSON.append(.object(o))
        }
        var out = sections
        out["results"] = .array(rowsJSON)
        out["values"] = .array(valuesJSON)
        return .object(out)
    }
}

func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

/// One decimal, no Foundation.
func fmt(_ v: Double) -> String {
    if !v.isFinite { return "-" }
    let neg = v < 0
    let s = String(Int((abs(v) * 10).rounded()))
    let whole = s.dropLast().isEmpty ? "0" : String(s.dropLast())
    return (neg ? "-" : "") + "\(grouped(whole)).\(s.last!)"
}

/// Two decimals (ratios near 1).
func fmt2(_ v: Double) -> String {
    guard v.isFinite else { return "-" }
    let c = Int((abs(v) * 100).rounded())
    let frac = c % 100
    return (v < 0 ? "-" : "") + "\(grouped(String(c / 100))).\(frac < 10 ? "0" : "")\(frac)"
}

func fmt0(_ v: Double) -> String { v.isFinite ? (v < 0 ? "-" : "") + grouped(String(Int(abs(v).rounded()))) : "-" }

func grouped(_ digits: String) -> String {
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return out
}

/// Microseconds, shown as µs below 10 ms and as ms above.
func fmtUS(_ us: Double) -> String { us < 10_000 ? "\(fmt(us)) µs" : "\(fmt(us / 1000)) ms" }

func fmtValue(_ v: Double, _ unit: String) -> String {
    switch unit {
    case "/s", "bytes", "count", "KiB": return "\(fmt0(v)) \(unit)"
    case "s": return v < 10 ? "\(fmt(v * 1000)) ms" : "\(fmt(v)) s"
    case "us": return fmtUS(v)
    default: return "\(fmt(v)) \(unit)"
    }
}

// MARK: - Threads

private final class ThreadBody: @unchecked Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Runs `body` on a new POSIX thread; `join` waits for it.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(
        &t, nil,
        { p in
            let b = Unmanaged<ThreadBody>.fromOpaque(p!).takeRetainedValue()
            b.body()
            return nil
        }, box)
    if rc != 0 { fail("pthread_create failed (\(rc))") }
    return t
}

func join(_ t: pthread_t) { pthread_join(t, nil) }

/// A value shared between threads behind a mutex.
final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    init(_ v: T) {
        value = v
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    func with<R>(_ f: (inout T) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return f(&value)
    }
}

/// All threads wait here until the last one arrives, so concurrent clients start together.
final class Barrier: @unchecked Sendable {
    private let b: UnsafeMutablePointer<pthread_barrier_t>
    init(_ count: Int) {
        b = .allocate(capacity: 1)
        pthread_barrier_init(b, nil, UInt32(count))
    }
    deinit {
        pthread_barrier_destroy(b)
        b.deallocate()
    }
    func wait() { pthread_barrier_wait(b) }
}

// MARK: - Files and processes

func makeTempDir(_ prefix: String) -> String {
    do {
        return try TemporaryDirectory.make(prefix: prefix)
    } catch {
        fail("mkdtemp failed")
    }
}

/// Runs a program and waits for it (used for `rm -rf` of temporary state).
@discardableResult
func runProgram(_ argv: [String]) -> Int32 {
    var pid: pid_t = 0
    var cargs = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    guard posix_spawnp(&pid, argv[0], nil, nil, &cargs, environ) == 0 else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return status
}

func writeFile(_ path: String, _ text: String) -> Bool {
    guard let f = fopen(path, "w") else { return false }
    fputs(text, f)
    fclose(f)
    return true
}

func readFile(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

/// `VmRSS` and `VmHWM` of a process in KiB, from /proc/PID/status.
func memoryKiB(pid: pid_t) -> (rss: Int, hwm: Int)? {
    guard let text = readFile("/proc/\(pid)/status") else { return nil }
    var rss = -1, hwm = -1
    for line in text.split(separator: "\n") {
        let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count >= 2, let v = Int(parts[1]) else { continue }
        if parts[0] == "VmRSS:" { rss = v }
        if parts[0] == "VmHWM:" { hwm = v }
    }
    return rss >= 0 ? (rss, hwm) : nil
}

func machineDescription() -> [String: JSON] {
    var o: [String: JSON] = ["cpus_online": .int(Int64(sysconf(Int32(_SC_NPROCESSORS_ONLN))))]
    if let cpu = readFile("/proc/cpuinfo")?.split(separator: "\n").first(where: { $0.hasPrefix("model name") }) {
        o["cpu"] = .string(String(cpu.split(separator: ":", maxSplits: 1).last ?? "").trimmingSpaces)
    }
    if let load = readFile("/proc/loadavg") { o["loadavg_at_start"] = .string(load.trimmingSpaces) }
    if let mem = readFile("/proc/meminfo")?.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal") }) {
        o["memory"] = .string(String(mem.split(separator: ":", maxSplits: 1).last ?? "").trimmingSpaces)
    }
    return o
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\n" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" { s = s.dropLast() }
        return String(s)
    }
}

/// Pins the calling thread to one CPU (best effort; false if the kernel refused).
@discardableResult
func pinCurrentThread(to cpu: Int) -> Bool {
    var set = cpu_set_t()
    withUnsafeMutableBytes(of: &set) { raw in
        guard cpu / 8 < raw.count else { return }
        raw[cpu / 8] |= UInt8(1 << (cpu % 8))
    }
    // sched_setaffinity is a GNU extension the Glibc module does not export: look it up.
    typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_setaffinity") else { return false }
    let f = unsafeBitCast(sym, to: SetAffinity.self)
    return withUnsafeBytes(of: &set) { f(0, $0.count, $0.baseAddress!) } == 0
}

var onlineCPUs: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
