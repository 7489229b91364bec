import BerthCore
import BerthStore

#if canImport(Glibc)
    import Glibc
#endif

/// `--restart-phases DIR`: what a restart of the daemon spends, phase by phase, in process and on a
/// real state (a `--keep-state` directory of the restart section): reading and decoding the snapshot,
/// then the calendar built as `Scheduler.init` builds it today (one `add` per lease) against the bulk
/// path (`CalendarBulkLoad.entriesByHost` and `IntervalTree(sorted:)` per host) that
/// `LeaseCalendar` can adopt. Checks that both calendars hold the same entries in the same order.
enum RestartPhases {
    static let section = "restart_phases"

    /// CPU seconds of the whole process so far (all threads): next to wall time it shows how much
    /// of a phase ran in parallel, and it is less disturbed by a busy machine.
    static func cpuSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func run(directory: String, report: Report, repeats: Int = 3) {
        let S = section
        print("== restart phases in process: \(directory) (\(Parallel.cores) CPUs) ==")
        let snap: BerthStore.Snapshot
        do {
            let store = try BerthStore(directory: directory)
            var loads: [Double] = []
            var cpu: [Double] = []
            var last: BerthStore.Snapshot?
            for _ in 0..<repeats {
                last = nil  // one snapshot in memory at a time
                let t0 = nanos(), c0 = cpuSeconds()
                last = try store.loadSnapshot()
                loads.append(seconds(since: t0))
                cpu.append(cpuSeconds() - c0)
            }
            snap = last!
            report.value(
                S,
                "loadSnapshot (read + decode \(snap.leases.count) leases, \(snap.ledger.count) ledger entries, \(snap.hosts.count) hosts)",
                Stats(samples: loads).median, "s",
                note: "each: " + loads.map { fmt($0) }.joined(separator: ", ") + "; CPU "
                    + cpu.map { fmt($0) }.joined(separator: ", "))
        } catch {
            print("  cannot load \(directory): \(error)")
            return
        }

        var incremental = LeaseCalendar()
        var inc: [Double] = []
        var incCPU: [Double] = []
        for _ in 0..<repeats {
            let t0 = nanos(), c0 = cpuSeconds()
            var c = LeaseCalendar()
            for l in snap.leases { c.add(l) }
            for p in snap.preemptibles { c.add(p) }
            inc.append(seconds(since: t0))
            incCPU.append(cpuSeconds() - c0)
            incremental = c
        }
        report.value(
            S, "calendar by inserts (LeaseCalendar.add), \(incremental.allocationCount) allocations",
            Stats(samples: inc).median, "s",
            note: "each: " + inc.map { fmt($0) }.joined(separator: ", ") + "; CPU "
                + incCPU.map { fmt($0) }.joined(separator: ", "))

        // The same inserts host by host, in each host's (start, end, add order): the entries and their
        // order are the same, and each tree stays in cache while it grows (only public API).
        var hostMajor = LeaseCalendar()
        var hm: [Double] = []
        var hmCPU: [Double] = []
        for _ in 0..<repeats {
            let t0 = nanos(), c0 = cpuSeconds()
            var c = LeaseCalendar()
            for (host, list) in CalendarBulkLoad.entriesByHost(leases: snap.leases, preemptibles: snap.preemptibles) {
                for (iv, e) in list { c.insert(host: host, interval: iv, entry: e) }
            }
            hm.append(seconds(since: t0))
            hmCPU.append(cpuSeconds() - c0)
            hostMajor = c
        }
        report.value(
            S, "calendar by inserts host by host (entriesByHost + LeaseCalendar.insert)", Stats(samples: hm).median,
            "s",
            note: "each: " + hm.map { fmt($0) }.joined(separator: ", ") + "; CPU "
                + hmCPU.map { fmt($0) }.joined(separator: ", "))

        var bulkCalendar = LeaseCalendar()
        var group: [Double] = []
        var build: [Double] = []
        var bulkCPU: [Double] = []
        for _ in 0..<repeats {
            bulkCalendar = LeaseCalendar()
            let t0 = nanos(), c0 = cpuSeconds()
            let lists = CalendarBulkLoad.entriesByHost(leases: snap.leases, preemptibles: snap.preemptibles)
            let t1 = nanos()
            bulkCalendar = LeaseCalendar(sortedEntriesByHost: lists)
            build.append(seconds(since: t1))
            bulkCPU.append(cpuSeconds() - c0)
            group.append(Double(t1 - t0) / 1e9)
        }
        let g = Stats(samples: group).median, b = Stats(samples: build).median
        report.value(S, "bulk: CalendarBulkLoad.entriesByHost (group and sort per host)", g, "s")
        report.value(S, "bulk: LeaseCalendar(sortedEntriesByHost:) for \(bulkCalendar.hostNames.count) hosts", b, "s")
        report.value(
            S, "bulk total", g + b, "s",
            note: "\(fmt(Stats(samples: inc).median / (g + b)))x faster than inserts; CPU "
                + bulkCPU.map { fmt($0) }.joined(separator: ", "))

        // Same calendar: every host's entries, in order.
        func differing(_ other: LeaseCalendar) -> Int {
            var problems = other.allocationCount == incremental.allocationCount ? 0 : 1
            for host in incremental.hostNames {
                let a = incremental.entries(host: host), b = other.entries(host: host)
                if a.map(\.interval) != b.map(\.interval) || a.map(\.payload) != b.map(\.payload) { problems += 1 }
            }
            return problems
        }
        report.value(
            S, "hosts whose bulk-built entries differ from the inserted ones", Double(differing(bulkCalendar)), "count")
        report.value(
            S, "hosts whose host-by-host entries differ from the inserted ones", Double(differing(hostMajor)), "count")
    }
}
