import BerthClient
import BerthCore
import BerthJSON
import BerthTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Section 2: a real berthd over its Unix socket. One daemon, filled in two phases:
///
/// 1. `socketHosts` hosts and the mixed population's first `socketLeases` leases (the same draws
///    as the in-process scale of that size), replayed as pipelined `lease.create` calls pinned to
///    the hosts the in-process planner chose (`["in", "$name", [...]]`), so the daemon ends up
///    with the same calendar; then `lease.create` from 1 and from 16 clients (unpinned: the
///    daemon's own allocator over every host).
/// 2. More of the population, later in the horizon, up to `findLeases` leases; then
///    `availability.find`, `lease.get` throughput and latency, the echo floor, and a restart.
struct SocketSuite {
    let options: Options
    let report: Report
    static let section = "socket"

    struct LoadResult {
        var seconds: Double
        var ok = 0
        var failed = 0
        var mismatched = 0
        var allocations = 0
        var ids: [String] = []
        var firstError: String?
    }

    static func allocationKey(host: String, gpu: Int64?, slot: Int64?, slots: Int64?, profile: String?) -> String {
        "\(host)|\(gpu ?? -1)|\(slot ?? -1)|\(slots ?? -1)|\(profile ?? "")"
    }

    static func keys(of lease: JSON) -> [String] {
        var out: [String] = []
        for r in lease["reservations"]?.arrayValue ?? [] {
            for a in r["allocations"]?.arrayValue ?? [] {
                out.append(
                    allocationKey(
                        host: a["host"]?.stringValue ?? "?", gpu: a["gpu"]?.intValue, slot: a["slot"]?.intValue,
                        slots: a["slots"]?.intValue, profile: a["profile"]?.stringValue))
            }
        }
        return out.sorted()
    }

    static func keys(of allocations: [Allocation]) -> [String] {
        allocations.map {
            allocationKey(
                host: $0.host, gpu: $0.gpu.map(Int64.init), slot: $0.slot.map(Int64.init),
                slots: $0.slots.map(Int64.init), profile: $0.profile)
        }.sorted()
    }

    static func countAllocations(_ lease: JSON) -> Int {
        (lease["reservations"]?.arrayValue ?? []).reduce(0) { $0 + ($1["allocations"]?.arrayValue?.count ?? 0) }
    }

    /// Replays placed leases as pipelined lease.create calls (500 per batch) and checks that the
    /// daemon placed each exactly as the in-process planner did.
    static func load(_ c: BerthConnection, _ leases: [Mixed.PlacedLease], progress: String) throws -> LoadResult {
        let t0 = nanos()
        var r = LoadResult(seconds: 0)
        var i = 0
        var nextReport = max(1, leases.count / 5)
        while i < leases.count {
            let j = min(leases.count, i + 500)
            let calls: [(String, JSON?)] = (i..<j).map { ("lease.create", leases[$0].createParams(name: "pop\($0)")) }
            let replies = try c.pipeline(calls)
            for (k, reply) in replies.enumerated() {
                switch reply {
                case .success(let lease):
                    r.ok += 1
                    r.allocations += countAllocations(lease)
                    if let id = lease["id"]?.stringValue { r.ids.append(id) }
                    if keys(of: lease) != keys(of: leases[i + k].allocations) { r.mismatched += 1 }
                case .failure(let e):
                    r.failed += 1
                    if r.firstError == nil { r.firstError = e.description }
                }
            }
            i = j
            if i >= nextReport && i < leases.count {
                print("    \(progress): \(i)/\(leases.count) leases in \(fmt(seconds(since: t0))) s")
                fflush(nil)
                nextReport += max(1, leases.count / 5)
            }
        }
        r.seconds = seconds(since: t0)
        return r
    }

    static func hostLease(_ rng: inout SplitMix64, hours: Int64, name: String) -> JSON {
        let start = Mixed.base + 3600 * Int64.random(in: 1..<max(2, hours), using: &rng)
        let end = start + 3600 * Int64.random(in: 1...72, using: &rng)
        return [
            "name": .string(name), "project_id": "bench", "start": .string(start.rfc3339), "end": .string(end.rfc3339),
            "reservations": [["kind": "host", "count": .int(Int64.random(in: 1...4, using: &rng))]],
        ]
    }

    func run() {
        let S = SocketSuite.section
        print("\n== over the Unix socket: real berthd (release, --clock manual, state in /tmp) ==")
        let dir = makeTempDir("berth-bench")
        let daemon = Daemon(berthd: options.berthd, dir: dir, now: Mixed.base.rfc3339)
        defer {
            daemon.terminate()
            if !options.keepState { runProgram(["rm", "-rf", dir]) } else { print("  state kept in \(dir)") }
        }
        guard daemon.spawn() else {
            print("  cannot start \(options.berthd); build it with `swift build -c release --product berthd`")
            report.sections["socket_error"] = .string("cannot start berthd")
            return
        }
        guard let cold = daemon.waitReady(timeout: 60) else {
            print("  berthd did not answer system.health; its log:\n\(daemon.logTail)")
            report.sections["socket_error"] = .string("berthd did not start")
            return
        }
        report.value(S, "berthd start, empty state (spawn to system.health)", cold, "s")
        do {
            try body(daemon)
        } catch {
            print("  socket benchmark failed: \(error)\n\(daemon.logTail)")
            report.sections["socket_error"] = .string("\(error)")
        }
    }

    private func body(_ daemon: Daemon) throws {
        let S = SocketSuite.section
        let c = try daemon.connect()
        let hosts = Mixed.hosts(options.socketHosts)
        let t0 = nanos()
        let hostReplies = try pipelineAll(c, hosts.map { ("host.create", Mixed.hostJSON($0)) })
        let hostFailures = hostReplies.filter { if case .failure = $0 { return true } else { return false } }.count
        report.value(
            S, "host.create x \(hosts.count), pipelined (load)", seconds(since: t0), "s",
            note: hostFailures > 0 ? "\(hostFailures) failed" : nil)

        // Phase 1: the population of the in-process scale socketHosts x socketLeases.
        var gen = Mixed.Generator(hosts: hosts, seed: 42)
        let h1 = Mixed.horizonHours(hosts: options.socketHosts, leases: options.socketLeases)
        let p1 = gen.generate(count: options.socketLeases, fromHour: 0, hours: h1, keep: true)
        var daemonLeases = 0
        var daemonAllocations = 0
        let l1 = try SocketSuite.load(c, p1, progress: "phase 1")
        daemonLeases += l1.ok
        daemonAllocations += l1.allocations
        report.value(
            S, "load phase 1: \(l1.ok) lease.create, pipelined (durable)", l1.seconds, "s",
            note:
                "\(fmt0(Double(l1.ok) / l1.seconds))/s, \(l1.failed) refused, \(l1.mismatched) placed differently from in-process"
        )
        if let e = l1.firstError { print("    first refusal: \(e)") }
        let scale1 = Scale(hosts: options.socketHosts, leases: daemonLeases)
        var ids = l1.ids

        // lease.create, 1 client, durable.
        var rng = SplitMix64(seed: 99)
        var samples: [Double] = []
        var refused = 0
        for i in 0..<options.createSamples {
            let p = SocketSuite.hostLease(&rng, hours: h1, name: "one\(i)")
            let t = nanos()
            let r = try? c.call("lease.create", p)
            samples.append(Double(nanos() - t) / 1000)
            if let r, let id = r["id"]?.stringValue {
                ids.append(id)
                daemonLeases += 1
                daemonAllocations += SocketSuite.countAllocations(r)
            } else {
                refused += 1
            }
        }
        report.add(
            S, "lease.create 1-4 hosts, durable, 1 client", scale1, Stats(samples: samples),
            extra: ["refused": .int(Int64(refused))])

        // The same requests with dry_run: placement, pricing and the reply, without the commit.
        var drng = SplitMix64(seed: 99)
        var dry: [Double] = []
        for i in 0..<options.createSamples {
            var p = SocketSuite.hostLease(&drng, hours: h1, name: "dry\(i)")
            if case .object(var o) = p {
                o["dry_run"] = true
                p = .object(o)
            }
            let t = nanos()
            _ = try? c.call("lease.create", p)
            dry.append(Double(nanos() - t) / 1000)
        }
        report.add(S, "lease.create 1-4 hosts, dry_run (no commit), 1 client", scale1, Stats(samples: dry))

        // The same kind of requests through the Blazar REST API (noauth: no token validation).
        restCreatesAndGets(daemon: daemon, hours: h1, scale: scale1, ids: &ids, leases: &daemonLeases)

        // lease.create, N concurrent clients (one connection and one thread each).
        let multi = concurrentCreates(daemon: daemon, hours: h1, scale: scale1)
        daemonLeases += multi.ok
        daemonAllocations += multi.allocations
        ids.append(contentsOf: multi.ids)

        // Phase 2: more of the population, after every lease above (they end before h1 + 72 h).
        let more = max(0, options.findLeases - daemonLeases)
        if more > 0 {
            let from = h1 + 96
            let h2 = Mixed.horizonHours(hosts: options.socketHosts, leases: more)
            let p2 = gen.generate(count: more, fromHour: from, hours: h2, keep: true)
            print(
                "  phase 2: \(p2.count) more leases of the same population over days \(from / 24)..\((from + h2) / 24)")
            let l2 = try SocketSuite.load(c, p2, progress: "phase 2")
            daemonLeases += l2.ok
            daemonAllocations += l2.allocations
            ids.append(contentsOf: l2.ids.prefix(5000))
            report.value(
                S, "load phase 2: \(l2.ok) lease.create, pipelined (durable)", l2.seconds, "s",
                note: "\(fmt0(Double(l2.ok) / l2.seconds))/s, \(l2.failed) refused, \(l2.mismatched) placed differently"
            )
            if let e = l2.firstError { print("    first refusal: \(e)") }
        }
        let scale2 = Scale(hosts: options.socketHosts, leases: daemonLeases)
        report.sections["socket_population"] = [
            "hosts": .int(Int64(options.socketHosts)), "leases": .int(Int64(daemonLeases)),
            "allocations": .int(Int64(daemonAllocations)),
        ]
        print("  daemon now holds \(daemonLeases) leases, \(daemonAllocations) allocations")

        // availability.find: 4 hosts x 8 h in the next 30 days.
        var frng = SplitMix64(seed: 5)
        var find: [Double] = []
        var found = 0
        for _ in 0..<options.findSamples {
            let earliest = Mixed.base + 3600 * Int64.random(in: 0..<168, using: &frng)
            let params: JSON = [
                "reservations": [["kind": "host", "count": 4]], "duration_s": .int(8 * 3600),
                "earliest": .string(earliest.rfc3339), "latest": .string((earliest + 30 * 86_400).rfc3339), "limit": 5,
            ]
            let t = nanos()
            let r = try c.call("availability.find", params)
            find.append(Double(nanos() - t) / 1000)
            found += r["items"]?.arrayValue?.count ?? 0
        }
        report.add(
            S, "availability.find 4 hosts x 8 h in 30 days", scale2, Stats(samples: find),
            extra: ["windows_found": .int(Int64(found))])

        // lease.get with the client library (parses every reply), for continuity with the first bench.
        var gets: [Double] = []
        for i in 0..<min(2000, options.getRequests / 10) where !ids.isEmpty {
            let t = nanos()
            _ = try c.call("lease.get", ["id": .string(ids[i % ids.count])])
            gets.append(Double(nanos() - t) / 1000)
        }
        report.add(S, "lease.get round trip, BerthConnection (client parses JSON)", scale2, Stats(samples: gets))
        c.close()

        readsAndEcho(daemon: daemon, ids: ids, scale: scale2)

        // Restart with this state.
        let down = daemon.terminate()
        guard daemon.spawn(), let up = daemon.waitReady(timeout: 600) else {
            print("  berthd did not come back after a restart:\n\(daemon.logTail)")
            return
        }
        let mem = daemon.memory
        report.value(S, "SIGTERM to exit, \(fmt0(Double(daemonAllocations))) allocations", down, "s")
        report.value(
            S,
            "restart to system.health, \(fmt0(Double(daemonLeases))) leases / \(fmt0(Double(daemonAllocations))) allocations",
            up, "s")
        if let mem {
            report.value(
                S, "VmRSS after restart (\(fmt0(Double(daemonAllocations))) allocations)", Double(mem.rss), "KiB")
            report.value(
                S, "VmRSS per allocation after restart, gross",
                Double(mem.rss) * 1024 / Double(max(1, daemonAllocations)), "bytes")
        }
        report.value(S, "SQLite database + WAL", Double(daemon.stateBytes), "bytes")
    }

    struct MultiResult {
        var ok = 0
        var allocations = 0
        var ids: [String] = []
    }

    private func concurrentCreates(daemon: Daemon, hours: Int64, scale: Scale) -> MultiResult {
        let S = SocketSuite.section
        let n = options.clients
        let per = options.createPerClient
        struct PerThread: Sendable {
            var samples: [Double] = []
            var ok = 0
            var refused = 0
            var allocations = 0
            var ids: [String] = []
            var start: UInt64 = 0
            var end: UInt64 = 0
            var error: String?
        }
        let results = Locked([PerThread](repeating: PerThread(), count: n))
        let barrier = Barrier(n)
        let socket = daemon.socket
        var threads: [pthread_t] = []
        for k in 0..<n {
            threads.append(
                startThread {
                    var mine = PerThread()
                    var rng = SplitMix64(seed: 1000 + UInt64(k))
                    let conn = try? BerthConnection(socketPath: socket)
                    barrier.wait()
                    mine.start = nanos()
                    if let conn {
                        for i in 0..<per {
                            let p = SocketSuite.hostLease(&rng, hours: hours, name: "c\(k)-\(i)")
                            let t = nanos()
                            do {
                                let r = try conn.call("lease.create", p)
                                mine.samples.append(Double(nanos() - t) / 1000)
                                mine.ok += 1
                                mine.allocations += SocketSuite.countAllocations(r)
                                if let id = r["id"]?.stringValue { mine.ids.append(id) }
                            } catch {
                                mine.samples.append(Double(nanos() - t) / 1000)
                                mine.refused += 1
                                if mine.error == nil { mine.error = "\(error)" }
                            }
                        }
                        conn.close()
                    } else {
                        mine.error = "cannot connect"
                    }
                    mine.end = nanos()
                    let m = mine
                    results.with { $0[k] = m }
                })
        }
        for t in threads { join(t) }
        let all = results.with { $0 }
        let samples = all.flatMap(\.samples)
        let ok = all.reduce(0) { $0 + $1.ok }
        let refused = all.reduce(0) { $0 + $1.refused }
        let wall = Double((all.map(\.end).max() ?? 0) - (all.map(\.start).min() ?? 0)) / 1e9
        report.add(
            S, "lease.create 1-4 hosts, durable, \(n) concurrent clients (per request)", scale, Stats(samples: samples),
            extra: ["refused": .int(Int64(refused))])
        report.value(
            S, "lease.create, \(n) concurrent clients: throughput", Double(ok) / max(wall, 1e-9), "/s",
            note: "\(ok) created in \(fmt(wall * 1000)) ms")
        if let e = all.compactMap(\.error).first { print("    first client error: \(e)") }
        var r = MultiResult()
        r.ok = ok
        r.allocations = all.reduce(0) { $0 + $1.allocations }
        r.ids = all.flatMap(\.ids)
        return r
    }

    /// lease.get against berthd and the same lines against the echo server: sequential round trips,
    /// then pipelined throughput over 1 and over N connections. The client only counts lines.
    private func readsAndEcho(daemon: Daemon, ids: [String], scale: Scale) {
        let S = SocketSuite.section
        guard !ids.isEmpty else { return }
        let lines: [[UInt8]] = ids.prefix(1000).enumerated().map { i, id in
            Array("{\"jsonrpc\":\"2.0\",\"id\":\(i + 1),\"method\":\"lease.get\",\"params\":{\"id\":\"\(id)\"}}\n".utf8)
        }
        let health: [[UInt8]] = [Array("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"system.health\"}\n".utf8)]
        let echoPath = daemon.dir + "/echo.sock"
        guard let echo = EchoServer(path: echoPath) else {
            print("  cannot start the echo server")
            return
        }
        defer { echo.stop() }

        func sequential(_ path: String, _ lines: [[UInt8]], count: Int) -> (Stats, replyBytes: Int, error: Bool)? {
            guard let client = LineClient(path: path) else { return nil }
            var s: [Double] = []
            s.reserveCapacity(count)
            var bytes = 0
            var error = false
            for i in 0..<count {
                let t = nanos()
                guard let reply = client.roundTrip(lines[i % lines.count]) else { return nil }
                s.append(Double(nanos() - t) / 1000)
                if i == 0 {
                    bytes = reply.count
                    error = String(decoding: reply, as: UTF8.self).contains("\"error\"")
                }
            }
            return (Stats(samples: s), bytes, error)
        }

        /// Requests per second with `conns` connections, each keeping `inFlight` requests in flight.
        func throughput(_ path: String, _ lines: [[UInt8]], conns: Int, total: Int) -> Double? {
            let per = max(1, total / conns)
            let barrier = Barrier(conns + 1)
            let failures = Locked(0)
            let window = options.inFlight
            var threads: [pthread_t] = []
            for _ in 0..<conns {
                threads.append(
                    startThread {
                        let client = LineClient(path: path)
                        barrier.wait()
                        if client?.pipelined(lines, total: per, window: window) != true { failures.with { $0 += 1 } }
                    })
            }
            barrier.wait()
            let t0 = nanos()
            for t in threads { join(t) }
            let wall = seconds(since: t0)
            if failures.with({ $0 }) > 0 { return nil }
            return Double(per * conns) / wall
        }

        // Round trips, lease.get and echo interleaved in rounds so that both see the same machine
        // state: on a small VM a wake-up on the other CPU costs tens of µs, and where the kernel
        // puts the two threads changes from run to run.
        let rounds = 5
        let perRound = max(40, min(4000, options.getRequests / 5) / rounds)
        var getSamples: [Double] = [], echoSamples: [Double] = [], healthSamples: [Double] = []
        var getRoundMedians: [Double] = [], echoRoundMedians: [Double] = []
        var getBytes = 0, echoBytes = 0
        for _ in 0..<rounds {
            guard let g = sequential(daemon.socket, lines, count: perRound),
                let e = sequential(echo.path, lines, count: perRound),
                let h = sequential(daemon.socket, health, count: perRound)
            else {
                print("  raw socket round trips failed")
                return
            }
            if g.error { print("  warning: lease.get replied with an error: check the ids") }
            getSamples += g.0.samples
            echoSamples += e.0.samples
            healthSamples += h.0.samples
            getRoundMedians.append(g.0.median)
            echoRoundMedians.append(e.0.median)
            getBytes = g.replyBytes
            echoBytes = e.replyBytes
        }
        let getStats = Stats(samples: getSamples), echoStats = Stats(samples: echoSamples)
        report.add(
            S, "lease.get round trip, raw line client (\(getBytes)-byte reply)", scale, getStats,
            extra: ["round_medians_us": .array(getRoundMedians.map { .double(round3($0)) })])
        report.add(S, "system.health round trip, raw line client", scale, Stats(samples: healthSamples))
        report.add(
            S, "echo round trip, same request line (\(echoBytes) bytes), in-process echo server", nil, echoStats,
            extra: ["round_medians_us": .array(echoRoundMedians.map { .double(round3($0)) })])
        report.value(S, "lease.get / echo round trip (median)", getStats.median / max(echoStats.median, 1e-9), "x")

        // The floor with the kernel's choice taken away: client and echo thread pinned to one CPU,
        // then to two different CPUs.
        let cpus = onlineCPUs
        for (label, serverCPU) in [("same CPU", 0), ("two CPUs", 1)] where serverCPU < cpus {
            guard let pinned = EchoServer(path: daemon.dir + "/echo-\(serverCPU).sock", cpu: serverCPU) else {
                continue
            }
            let out = Locked<Stats?>(nil)
            let n = perRound * rounds
            let path = pinned.path
            let line = lines[0]
            join(
                startThread {
                    pinCurrentThread(to: 0)
                    guard let client = LineClient(path: path) else { return }
                    var s: [Double] = []
                    for _ in 0..<n {
                        let t = nanos()
                        guard client.roundTrip(line) != nil else { return }
                        s.append(Double(nanos() - t) / 1000)
                    }
                    let st = Stats(samples: s)
                    out.with { $0 = st }
                })
            pinned.stop()
            if let st = out.with({ $0 }) {
                report.add(S, "echo round trip, client and echo thread pinned: \(label)", nil, st)
                report.value(
                    S, "lease.get / echo round trip pinned to \(label) (median)",
                    getStats.median / max(st.median, 1e-9), "x")
            }
        }

        // Throughput: three interleaved rounds each (lease.get, echo), the median round reported.
        for conns in [1, options.clients] {
            var g: [Double] = [], e: [Double] = []
            for _ in 0..<3 {
                if let x = throughput(daemon.socket, lines, conns: conns, total: max(conns, options.getRequests / 3)) {
                    g.append(x)
                }
                if let x = throughput(echo.path, lines, conns: conns, total: max(conns, options.getRequests / 3)) {
                    e.append(x)
                }
            }
            let gm = g.count == 3 ? g.sorted()[1] : Double.nan
            let em = e.count == 3 ? e.sorted()[1] : Double.nan
            let plural = conns == 1 ? "" : "s"
            report.value(
                S, "lease.get throughput, \(conns) connection\(plural), \(options.inFlight) in flight each", gm, "/s",
                note: "rounds: " + g.map { fmt0($0) }.joined(separator: ", "))
            report.value(
                S, "echo throughput, \(conns) connection\(plural), \(options.inFlight) in flight each", em, "/s",
                note: "rounds: " + e.map { fmt0($0) }.joined(separator: ", "))
            if gm.isFinite && em.isFinite {
                report.value(S, "echo / lease.get throughput, \(conns) connection\(plural)", em / gm, "x")
            }
        }
    }

    /// `POST /v1/leases` (1-4 hosts, durable) and `GET /v1/leases/{id}` on one keep-alive
    /// connection. The REST API answers the same lease in Blazar's shape, so the difference to the
    /// JSON-RPC figures is HTTP, Blazar's translation, and the second call a REST create makes
    /// (none: create is one contract call; a GET of an active lease also asks for its actions).
    private func restCreatesAndGets(daemon: Daemon, hours: Int64, scale: Scale, ids: inout [String], leases: inout Int)
    {
        let S = SocketSuite.section
        guard let http = HTTPConnection(port: daemon.blazarPort) else {
            print("  cannot connect to the REST API on port \(daemon.blazarPort)")
            return
        }
        func blazarDate(_ rfc3339: String) -> String {
            // 2030-01-01T10:00:00Z -> 2030-01-01 10:00
            String(rfc3339.prefix(16)).replacingOccurrencesOfT()
        }
        var rng = SplitMix64(seed: 99)
        var creates: [Double] = []
        var refused = 0
        var restIDs: [String] = []
        for i in 0..<options.createSamples {
            let p = SocketSuite.hostLease(&rng, hours: hours, name: "rest\(i)")
            let n = p["reservations"]?.arrayValue?.first?["count"]?.intValue ?? 1
            let body: JSON = [
                "name": .string("rest\(i)"), "start_date": .string(blazarDate(p["start"]?.stringValue ?? "")),
                "end_date": .string(blazarDate(p["end"]?.stringValue ?? "")), "events": [],
                "reservations": [
                    [
                        "resource_type": "physical:host", "min": .int(n), "max": .int(n), "hypervisor_properties": "",
                        "resource_properties": "",
                    ]
                ],
            ]
            let t = nanos()
            let r = try? http.send("POST", "/v1/leases", token: "admin:bench", body: body)
            creates.append(Double(nanos() - t) / 1000)
            if let r, r.status == 201, let id = r.body?["lease"]?["id"]?.stringValue {
                restIDs.append(id)
                leases += 1
            } else {
                refused += 1
            }
        }
        report.add(
            S, "POST /v1/leases 1-4 hosts, durable, 1 client (REST, noauth)", scale, Stats(samples: creates),
            extra: ["refused": .int(Int64(refused))])
        ids.append(contentsOf: restIDs)
        var gets: [Double] = []
        let pool = ids.isEmpty ? restIDs : ids
        for i in 0..<min(2000, options.getRequests / 10) where !pool.isEmpty {
            let t = nanos()
            _ = try? http.send("GET", "/v1/leases/\(pool[i % pool.count])", token: "admin:bench")
            gets.append(Double(nanos() - t) / 1000)
        }
        report.add(S, "GET /v1/leases/{id} round trip (REST, noauth)", scale, Stats(samples: gets))
    }
}

extension String {
    fileprivate func replacingOccurrencesOfT() -> String { String(map { $0 == "T" ? " " : $0 }) }
}
