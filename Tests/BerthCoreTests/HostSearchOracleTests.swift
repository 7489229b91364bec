import BerthCore
import BerthJSON
import BerthTestSupport
import Testing

/// The indexed search for whole hosts (`LeasePlanner.tightestFree`, walking the calendar's global
/// start and end indexes) against the simple oracle it replaced: rank every free eligible host by
/// (GPU count, slack, name). Random calendars with preemptibles (both views), hosts down or not
/// reservable, property filters, kept hosts, and gaps beyond the slack cap.
@Suite struct HostSearchOracleTests {
    static let t0 = Timestamp(seconds: 0)

    static func oracle(
        hosts: [Host], calendar: LeaseCalendar, request r: ReservationRequest, window: Interval, keep: [Allocation]
    ) -> Result<[[Allocation]], LeasePlanner.Failure> {
        let eligible = hosts.filter { $0.isSchedulable && r.properties.matches($0) }
        if Int64(eligible.count) < r.min { return .failure(.neverFits("")) }
        let free = eligible.filter { calendar.isFree(host: $0.name, during: window) }
        var chosen: [String] = []
        for a in keep
        where free.contains(where: { $0.name == a.host }) && !chosen.contains(a.host) && Int64(chosen.count) < r.max {
            chosen.append(a.host)
        }
        let ranked = free.filter { !chosen.contains($0.name) }
            .map { (gpus: $0.gpus.count, slack: calendar.slack(host: $0.name, around: window), name: $0.name) }
            .sorted { ($0.gpus, $0.slack, $0.name) < ($1.gpus, $1.slack, $1.name) }
        for c in ranked where Int64(chosen.count) < r.max { chosen.append(c.name) }
        if Int64(chosen.count) < r.min { return .failure(.busy("")) }
        return .success([chosen.map { Allocation(host: $0) }])
    }

    static func same(
        _ a: Result<[[Allocation]], LeasePlanner.Failure>, _ b: Result<[[Allocation]], LeasePlanner.Failure>
    ) -> Bool {
        switch (a, b) {
        case (.success(let x), .success(let y)): return x == y
        case (.failure(.neverFits), .failure(.neverFits)), (.failure(.busy), .failure(.busy)): return true
        default: return false
        }
    }

    @Test(arguments: 0..<40)
    func indexedSearchEqualsRankingEveryHost(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed) &* 7919 &+ 1)
        let hostCount = Int.random(in: 1...40, using: &rng)
        // Some seeds spread allocations over years, so free gaps reach the slack cap.
        let span: Int64 = seed % 4 == 0 ? 4 * LeaseCalendar.slackCap : 200_000
        var hosts: [Host] = []
        for i in 0..<hostCount {
            var h = Host(
                name: "n\(String(format: "%03d", (i * 37) % 1000))", vcpus: 8, memoryMB: 1024, diskGB: 10,
                gpus: Array(
                    repeating: GPUSpec(model: "A100-40GB"), count: [0, 0, 0, 1, 4][Int.random(in: 0..<5, using: &rng)]),
                properties: ["rack": .string("r\(Int.random(in: 0..<3, using: &rng))")], createdAt: Self.t0,
                updatedAt: Self.t0)
            if Int.random(in: 0..<10, using: &rng) == 0 { h.state = .down }
            if Int.random(in: 0..<12, using: &rng) == 0 { h.reservable = false }
            if !hosts.contains(where: { $0.name == h.name }) { hosts.append(h) }
        }
        var cal = LeaseCalendar()
        var live: [(String, Interval, CalendarEntry)] = []
        for k in 0..<Int.random(in: 0...(hostCount * 6), using: &rng) {
            let h = hosts[Int.random(in: 0..<hosts.count, using: &rng)].name
            let s = Int64.random(in: 0..<span, using: &rng)
            let iv = Interval(start: s, end: s + Int64.random(in: 1...(span / 10), using: &rng))
            var e = CalendarEntry(leaseID: "l\(k)", reservationID: "r\(k)")
            if Int.random(in: 0..<6, using: &rng) == 0 {
                e.guaranteedUntil = iv.start + Int64.random(in: 0...(iv.end - iv.start), using: &rng)
            }
            cal.insert(host: h, interval: iv, entry: e)
            live.append((h, iv, e))
        }
        // Remove some again, so the indexes see removals too.
        for _ in 0..<(live.count / 4) {
            let i = Int.random(in: 0..<live.count, using: &rng)
            let (h, iv, e) = live.remove(at: i)
            let removed = cal.remove(host: h, interval: iv, entry: e)
            #expect(removed)
        }
        for round in 0..<60 {
            var view = cal
            if round % 2 == 1 { view.preemptibleView = .guaranteedOnly }
            let n = Int64.random(in: 1...5, using: &rng)
            var r = ReservationRequest(hosts: n)
            r.max = n + Int64.random(in: 0...2, using: &rng)
            if round % 5 == 0 { r.properties = .equalities(["rack": .string("r1")]) }
            let s = Int64.random(in: -span / 10..<span, using: &rng)
            let window = Interval(start: s, end: s + Int64.random(in: 1...(span / 20), using: &rng))
            let keep =
                round % 7 == 0
                ? (0..<2).map { _ in Allocation(host: hosts[Int.random(in: 0..<hosts.count, using: &rng)].name) } : []
            var planner = LeasePlanner(hosts: hosts.shuffled(using: &rng), calendar: view)
            let want = Self.oracle(
                hosts: hosts.sorted { $0.name < $1.name }, calendar: view, request: r, window: window, keep: keep)
            for limit in [0, 64] {
                planner.exhaustiveRankingLimit = limit
                let got = planner.place([r], window: window, keep: [keep])
                #expect(Self.same(got, want), "seed \(seed) round \(round) limit \(limit): \(got) vs \(want)")
            }
        }
    }

    @Test func timeIndexMatchesASortedArray() {
        var rng = SplitMix64(seed: 99)
        var index = TimeIndex()
        var oracle: [TimeIndex.Item] = []
        for step in 0..<6000 {
            if oracle.isEmpty || Int.random(in: 0..<3, using: &rng) > 0 {
                let item = TimeIndex.Item(
                    time: Int64.random(in: 0..<500, using: &rng), host: Int32.random(in: 0..<20, using: &rng))
                index.insert(item)
                oracle.append(item)
                oracle.sort()
            } else {
                let item =
                    Int.random(in: 0..<4, using: &rng) == 0
                    ? TimeIndex.Item(time: 10_000, host: 0) : oracle[Int.random(in: 0..<oracle.count, using: &rng)]
                let had = oracle.firstIndex(of: item)
                #expect(index.remove(item) == (had != nil))
                if let had { oracle.remove(at: had) }
            }
            if step % 250 == 0 {
                #expect(index.items == oracle)
                #expect(index.count == oracle.count)
                let t = Int64.random(in: -5..<505, using: &rng)
                var forward = index.cursor(atTime: t)
                var back = forward
                var after: [TimeIndex.Item] = []
                while let x = index.next(&forward) { after.append(x) }
                var before: [TimeIndex.Item] = []
                while let x = index.previous(&back) { before.append(x) }
                #expect(after == oracle.filter { $0.time >= t })
                #expect(before == oracle.filter { $0.time < t }.reversed())
            }
        }
        let bulk = TimeIndex(oracle.shuffled(using: &rng))
        #expect(bulk.items == oracle)
    }
}

/// GPU and instance requests planned on the narrowed hosts (partly used ones, kept ones, and per
/// class the few free ones that fit most tightly) against planning on every host.
@Suite struct NarrowedCandidatesTests {
    static let t0 = Timestamp(seconds: 0)

    static func hosts(_ rng: inout SplitMix64) -> [Host] {
        let kinds: [(Int64, Int64, [String])] = [
            (64, 262_144, []), (32, 131_072, []), (64, 524_288, ["A100-40GB", "A100-40GB"]),
            (64, 524_288, ["A100-80GB"]),
        ]
        return (0..<Int.random(in: 20...70, using: &rng)).map { i in
            let k = kinds[Int.random(in: 0..<kinds.count, using: &rng)]
            var h = Host(
                name: "g\(String(format: "%03d", i))", vcpus: k.0, memoryMB: k.1, diskGB: 500,
                gpus: k.2.map(GPUSpec.init(model:)),
                createdAt: t0, updatedAt: t0)
            if Int.random(in: 0..<15, using: &rng) == 0 { h.state = .down }
            return h
        }
    }

    static func request(_ rng: inout SplitMix64) -> ReservationRequest {
        var r = ReservationRequest(hosts: 1)
        switch Int.random(in: 0..<3, using: &rng) {
        case 0:
            r.kind = .gpu
            r.profile = ["1g.5gb", "3g.20gb", "2g.10gb", "1g.10gb"][Int.random(in: 0..<4, using: &rng)]
            if Int.random(in: 0..<4, using: &rng) == 0 { r.gpuModel = "A100-40GB" }
        case 1:
            r.kind = .instance
            r.vcpus = [1, 4, 16, 48][Int.random(in: 0..<4, using: &rng)]
            r.memoryMB = r.vcpus! * 4096
            r.diskGB = 20
            r.affinity = [nil, "same_host", "different_host"][Int.random(in: 0..<3, using: &rng)]
        default:
            break
        }
        let n = Int64.random(in: 1...6, using: &rng)
        r.min = n
        r.max = n
        return r
    }

    @Test(arguments: 0..<30)
    func narrowedEqualsEveryHost(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed) &* 104_729 &+ 3)
        let hosts = Self.hosts(&rng)
        var calendar = LeaseCalendar()
        var planner = LeasePlanner(hosts: hosts, calendar: calendar)
        planner.exhaustiveRankingLimit = 0
        var placed: [(Interval, [[Allocation]], [ReservationRequest])] = []
        // Fill the calendar through the planner itself, with leases of all kinds.
        for k in 0..<Int.random(in: 10...120, using: &rng) {
            let s = Int64.random(in: 0..<400, using: &rng) * 3600
            let window = Interval(start: s, end: s + Int64.random(in: 1...72, using: &rng) * 3600)
            let requests = (0..<Int.random(in: 1...2, using: &rng)).map { _ in Self.request(&rng) }
            guard case .success(let allocs) = planner.place(requests, window: window) else { continue }
            let lease = Lease(
                id: "l\(k)", name: "l", projectID: "p", userID: nil, start: Timestamp(seconds: window.start),
                end: Timestamp(seconds: window.end), beforeEndSeconds: nil, status: .pending,
                reservations: requests.enumerated().map { j, r in
                    Reservation(id: "l\(k)r\(j)", request: r, status: .pending, allocations: allocs[j])
                },
                createdAt: Self.t0)
            calendar.add(lease)
            planner = LeasePlanner(hosts: hosts, calendar: calendar)
            planner.exhaustiveRankingLimit = 0
            placed.append((window, allocs, requests))
        }
        for round in 0..<40 {
            let s = Int64.random(in: 0..<420, using: &rng) * 3600
            let window = Interval(start: s, end: s + Int64.random(in: 1...72, using: &rng) * 3600)
            var requests = (0..<Int.random(in: 1...3, using: &rng)).map { _ in Self.request(&rng) }
            var keep: [[Allocation]] = []
            if round % 5 == 0, let p = placed.randomElement(using: &rng) {
                requests = p.2
                keep = p.1
            }
            var every = planner
            every.narrowsCandidates = false
            let got = planner.place(requests, window: window, keep: keep)
            let want = every.place(requests, window: window, keep: keep)
            #expect(got == want, "seed \(seed) round \(round)")
        }
    }
}
