import BerthClient
import BerthCore
import BerthJSON

#if canImport(Glibc)
    import Glibc
#endif

/// Section 3: restart time and resident memory with many allocations.
///
/// `restartHosts` hosts (one in ten with 4 GPUs), grouped in blocks of `restartLeaseHosts`
/// consecutive hosts (host property `blk`). Each lease takes one whole block for 20 h; the leases of
/// a block follow one another a day apart, so every lease.create is accepted and placed by the daemon's
/// own allocator (filter `{"blk": "bN"}`, count = block size). Loaded with pipelined lease.create
/// (durable) until `restartAllocations` allocations or `restartLoadBudget` seconds, whichever comes
/// first; then berthd is stopped (SIGTERM) and started again `restarts` times, timing spawn to the
/// first `system.health` answer and reading VmRSS from /proc.
struct RestartSuite {
    let options: Options
    let report: Report
    static let section = "restart"

    func run() {
        let S = RestartSuite.section
        let k = max(1, options.restartLeaseHosts)
        print(
            "\n== restart and memory: \(fmt0(Double(options.restartHosts))) hosts, target \(fmt0(Double(options.restartAllocations))) allocations (\(k)-host leases) =="
        )
        let dir = makeTempDir("berth-bench-restart")
        let daemon = Daemon(berthd: options.berthd, dir: dir, now: Mixed.base.rfc3339)
        defer {
            daemon.terminate()
            if !options.keepState { runProgram(["rm", "-rf", dir]) } else { print("  state kept in \(dir)") }
        }
        guard daemon.spawn(), daemon.waitReady(timeout: 60) != nil else {
            print("  cannot start berthd:\n\(daemon.logTail)")
            report.sections["restart_error"] = .string("cannot start berthd")
            return
        }
        do {
            let hosts = Mixed.hosts(options.restartHosts, block: k)
            let c = try daemon.connect()
            let t0 = nanos()
            _ = try pipelineAll(c, hosts.map { ("host.create", Mixed.hostJSON($0)) })
            report.value(S, "host.create x \(hosts.count), pipelined (load)", seconds(since: t0), "s")
            c.close()

            // Baseline: the same daemon with its hosts and no lease, restarted.
            daemon.terminate()
            guard daemon.spawn(), let baseUp = daemon.waitReady() else {
                throw BerthClientError.io("berthd did not restart (baseline)")
            }
            let baseRSS = daemon.memory?.rss ?? 0
            report.value(S, "restart to system.health, hosts only (baseline)", baseUp, "s")
            report.value(S, "VmRSS after restart, hosts only (baseline)", Double(baseRSS), "KiB")

            // Load.
            let blocks = hosts.count / k
            guard blocks > 0 else { throw BerthClientError.io("fewer hosts than one lease takes") }
            let wanted = (options.restartAllocations + k - 1) / k
            let conn = try daemon.connect()
            let loadStart = nanos()
            var created = 0
            var allocations = 0
            var refused = 0
            var firstError: String?
            var lease = 0
            var nextReport = 0.1
            var stoppedByBudget = false
            while lease < wanted {
                if seconds(since: loadStart) > options.restartLoadBudget {
                    stoppedByBudget = true
                    break
                }
                let j = min(wanted, lease + 500)
                let calls: [(String, JSON?)] = (lease..<j).map { n in
                    let round = Int64(n / blocks), block = n % blocks
                    let start = Mixed.base + 3600 + round * 86_400
                    return (
                        "lease.create",
                        [
                            "name": .string("r\(n)"), "project_id": "bench", "start": .string(start.rfc3339),
                            "end": .string((start + 20 * 3600).rfc3339),
                            "reservations": [
                                ["kind": "host", "count": .int(Int64(k)), "properties": ["blk": .string("b\(block)")]]
                            ],
                        ]
                    )
                }
                for r in try conn.pipeline(calls) {
                    switch r {
                    case .success(let l):
                        created += 1
                        allocations += SocketSuite.countAllocations(l)
                    case .failure(let e):
                        refused += 1
                        if firstError == nil { firstError = e.description }
                    }
                }
                lease = j
                let done = Double(lease) / Double(wanted)
                if done >= nextReport && lease < wanted {
                    let el = seconds(since: loadStart)
                    print(
                        "    loaded \(fmt0(Double(allocations))) allocations (\(created) leases) in \(fmt(el)) s, \(fmt0(Double(created) / el)) lease.create/s"
                    )
                    fflush(nil)
                    nextReport += 0.1
                }
            }
            conn.close()
            let loadSeconds = seconds(since: loadStart)
            if let firstError { print("    first refusal: \(firstError)") }
            report.value(
                S, "load: \(created) lease.create of \(k) hosts, pipelined (durable)", loadSeconds, "s",
                note:
                    "\(fmt0(Double(created) / loadSeconds)) leases/s, \(fmt0(Double(allocations) / loadSeconds)) allocations/s, \(refused) refused"
                    + (stoppedByBudget ? ", stopped by the \(fmt0(options.restartLoadBudget)) s budget" : ""))
            report.value(S, "allocations loaded", Double(allocations), "count")
            if let m = daemon.memory {
                report.value(S, "VmRSS of the daemon that loaded them (before restart)", Double(m.rss), "KiB")
            }
            report.value(S, "SQLite database + WAL", Double(daemon.stateBytes), "bytes")

            // Restarts.
            var ups: [Double] = []
            var downs: [Double] = []
            var rss: [Double] = []
            var hwm: [Double] = []
            for _ in 0..<options.restarts {
                downs.append(daemon.terminate())
                guard daemon.spawn(), let up = daemon.waitReady(timeout: 900) else {
                    throw BerthClientError.io("berthd did not restart")
                }
                ups.append(up)
                if let m = daemon.memory {
                    rss.append(Double(m.rss))
                    hwm.append(Double(m.hwm))
                }
            }
            let up = Stats(samples: ups).median
            let r = Stats(samples: rss).median
            let allocs = Double(max(1, allocations))
            report.value(S, "SIGTERM to exit (median of \(downs.count))", Stats(samples: downs).median, "s")
            report.value(
                S, "restart to system.health, \(fmt0(allocs)) allocations (median of \(ups.count))", up, "s",
                note: "each: " + ups.map { fmt($0) }.joined(separator: ", ") + " s")
            report.value(S, "VmRSS after restart", r, "KiB", note: "VmHWM \(fmt0(Stats(samples: hwm).median)) KiB")
            report.value(
                S, "VmRSS per allocation after restart, gross (VmRSS / allocations)", r * 1024 / allocs, "bytes")
            report.value(
                S, "VmRSS per allocation after restart, net of the hosts-only baseline",
                (r - Double(baseRSS)) * 1024 / allocs, "bytes")
            report.value(
                S, "VmHWM per allocation (peak while loading at start)", Stats(samples: hwm).median * 1024 / allocs,
                "bytes")
            report.sections["restart_population"] = [
                "hosts": .int(Int64(hosts.count)), "lease_hosts": .int(Int64(k)), "leases": .int(Int64(created)),
                "allocations": .int(Int64(allocations)), "target_allocations": .int(Int64(options.restartAllocations)),
                "load_stopped_by_budget": .bool(stoppedByBudget),
            ]
            if allocations < options.restartAllocations && allocations > 0 {
                // Linear in allocations above the hosts-only baseline: an extrapolation, not a measurement.
                let f = Double(options.restartAllocations) / allocs
                report.value(
                    S, "EXTRAPOLATED restart at \(fmt0(Double(options.restartAllocations))) allocations (linear)",
                    baseUp + (up - baseUp) * f, "s")
                report.value(
                    S, "EXTRAPOLATED VmRSS at \(fmt0(Double(options.restartAllocations))) allocations (linear)",
                    Double(baseRSS) + (r - Double(baseRSS)) * f, "KiB")
            }
        } catch {
            print("  restart benchmark failed: \(error)\n\(daemon.logTail)")
            report.sections["restart_error"] = .string("\(error)")
        }
    }
}
