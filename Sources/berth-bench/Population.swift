import BerthCore
import BerthJSON
import BerthTestSupport

/// The mixed, deterministic population of the allocator and socket suites: one host in ten carries 4 × A100-40GB
/// (MIG), the rest are CPU hosts; leases are 60 % whole hosts (1–4), 20 % GPU slices (1g.5gb,
/// 2g.10gb, 3g.20gb or 7g.40gb, 1–4 of them) and 20 % instance slots (2–16 vCPUs, 1–8 instances),
/// each for 1–72 whole hours starting on a whole hour.
///
/// Density is constant across scales: five leases per host per 60 days, so the horizon grows with
/// leases / hosts (100 × 1,000 and 10,000 × 100,000 span 120 days, 1,000 × 5,000 spans 60 days).
/// The cloud stays about a third booked whatever the scale, as a real one would; a bigger
/// calendar means a longer booked future, not an impossible pile-up in the same weeks.
///
/// Each lease is placed by Berth's own `LeasePlanner` (its packing policy), but over a block of
/// 16 consecutive hosts (8 GPU hosts for slices) chosen at random, so that building 100,000
/// leases on 10,000 hosts takes seconds rather than the allocator's full scan per lease.
enum Mixed {
    static let base = Timestamp(rfc3339: "2030-01-01T00:00:00Z")!
    static let gpuEvery = 10

    static func hostName(_ i: Int) -> String {
        let digits = String(i)
        return "h" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    static func isGPUHost(_ i: Int) -> Bool { i % gpuEvery == gpuEvery - 1 }

    /// `block`: hosts get a `blk` property naming groups of that many consecutive hosts (restart test).
    static func hosts(_ count: Int, block: Int? = nil) -> [Host] {
        (0..<count).map { i in
            let gpu = isGPUHost(i)
            var props: [String: JSON] = ["rack": .string("r\(i % 20)")]
            if let block { props["blk"] = .string("b\(i / block)") }
            return Host(
                name: hostName(i), vcpus: 64, memoryMB: gpu ? 524_288 : 262_144, diskGB: 960,
                gpus: gpu ? Array(repeating: GPUSpec(model: "A100-40GB"), count: 4) : [],
                properties: props, createdAt: base, updatedAt: base)
        }
    }

    static func hostJSON(_ h: Host) -> JSON {
        var o: [String: JSON] = [
            "name": .string(h.name), "vcpus": .int(h.vcpus), "memory_mb": .int(h.memoryMB), "disk_gb": .int(h.diskGB),
            "properties": .object(h.properties),
        ]
        if !h.gpus.isEmpty { o["gpus"] = .array(h.gpus.map { ["model": .string($0.model)] }) }
        return .object(o)
    }

    /// Hours of horizon for `leases` at constant density (5 leases per host per 60 days).
    static func horizonHours(hosts: Int, leases: Int) -> Int64 {
        max(24, Int64((Double(leases) * 1440 / (5 * Double(hosts))).rounded()))
    }

    // MARK: Requests

    enum Kind: String, CaseIterable { case host, gpu, instance }

    static func hostRequest(_ rng: inout SplitMix64) -> ReservationRequest {
        ReservationRequest(hosts: Int64.random(in: 1...4, using: &rng))
    }

    static func gpuRequest(_ rng: inout SplitMix64, profiles: [String]) -> ReservationRequest {
        var r = ReservationRequest(hosts: 1)
        r.kind = .gpu
        r.profile = profiles[Int.random(in: 0..<profiles.count, using: &rng)]
        let n = Int64.random(in: 1...4, using: &rng)
        r.min = n
        r.max = n
        return r
    }

    static func instanceRequest(_ rng: inout SplitMix64, vcpuChoices: [Int64], maxCount: Int64) -> ReservationRequest {
        var r = ReservationRequest(hosts: 1)
        r.kind = .instance
        r.vcpus = vcpuChoices[Int.random(in: 0..<vcpuChoices.count, using: &rng)]
        r.memoryMB = r.vcpus! * 4096
        r.diskGB = 20
        let n = Int64.random(in: 1...maxCount, using: &rng)
        r.min = n
        r.max = n
        return r
    }

    /// The request a benchmark asks for: host 1–4; GPU 1g.5gb or 3g.20gb × 1–4; instance 1–8 small.
    static func benchRequest(_ kind: Kind, _ rng: inout SplitMix64) -> ReservationRequest {
        switch kind {
        case .host: return hostRequest(&rng)
        case .gpu: return gpuRequest(&rng, profiles: ["1g.5gb", "3g.20gb"])
        case .instance: return instanceRequest(&rng, vcpuChoices: [1, 2, 4, 8], maxCount: 8)
        }
    }

    /// `reservations[0]` of lease.create / availability.find for a request, with an optional filter.
    static func requestJSON(_ r: ReservationRequest, properties: JSON? = nil) -> JSON {
        var o: [String: JSON] = ["kind": .string(r.kind.rawValue), "count": .int(r.min)]
        switch r.kind {
        case .host: break
        case .gpu: o["profile"] = .string(r.profile ?? "")
        case .instance:
            o["vcpus"] = .int(r.vcpus ?? 1)
            o["memory_mb"] = .int(r.memoryMB ?? 1024)
            o["disk_gb"] = .int(r.diskGB ?? 0)
        }
        if let properties { o["properties"] = properties }
        return .object(o)
    }

    // MARK: Population

    struct PlacedLease {
        var request: ReservationRequest
        var window: Interval
        var allocations: [Allocation]

        /// lease.create params pinned (`$name in [...]`) to the hosts the in-process planner chose.
        func createParams(name: String) -> JSON {
            var names: [String] = []
            for a in allocations where !names.contains(a.host) { names.append(a.host) }
            return [
                "name": .string(name), "project_id": "bench",
                "start": .string(Timestamp(seconds: window.start).rfc3339),
                "end": .string(Timestamp(seconds: window.end).rfc3339),
                "reservations": [requestJSON(request, properties: ["in", "$name", .array(names.map { .string($0) })])],
            ]
        }
    }

    /// Builds the population lease by lease into one calendar. `generate` may be called again to
    /// extend it (the daemon section loads 5,000 leases, then more later in the horizon).
    struct Generator {
        let hosts: [Host]
        let gpuHosts: [Int]
        var calendar = LeaseCalendar()
        var rng: SplitMix64
        var placed = 0
        var failedAttempts = 0
        var allocations = 0

        init(hosts: [Host], seed: UInt64) {
            self.hosts = hosts
            self.gpuHosts = hosts.indices.filter { !hosts[$0].gpus.isEmpty }
            self.rng = SplitMix64(seed: seed)
            // Number every host up front, as the daemon does: a planner over a block of hosts the
            // calendar has not met would otherwise register them on its own copy every time.
            _ = HostInventory(hosts: hosts, calendar: &calendar)
        }

        /// Places `count` more leases with starts in [fromHour, fromHour + hours) after `base`.
        /// Keeps and returns them only when `keep` (the socket section replays them over the wire).
        mutating func generate(count: Int, fromHour: Int64, hours: Int64, keep: Bool) -> [PlacedLease] {
            var out: [PlacedLease] = []
            if keep { out.reserveCapacity(count) }
            var made = 0
            let giveUp = failedAttempts + 4 * count + 100
            while made < count && failedAttempts < giveUp {
                let roll = Int.random(in: 0..<100, using: &rng)
                let kind: Kind = roll < 60 ? .host : (roll < 80 ? .gpu : .instance)
                let request: ReservationRequest
                var block: [Host] = []
                switch kind {
                case .host, .instance:
                    request =
                        kind == .host
                        ? Mixed.hostRequest(&rng)
                        : Mixed.instanceRequest(&rng, vcpuChoices: [2, 4, 8, 16], maxCount: 8)
                    let first = Int.random(in: 0..<hosts.count, using: &rng)
                    for k in 0..<min(16, hosts.count) { block.append(hosts[(first + k) % hosts.count]) }
                case .gpu:
                    request = Mixed.gpuRequest(&rng, profiles: ["1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb"])
                    if !gpuHosts.isEmpty {
                        let first = Int.random(in: 0..<gpuHosts.count, using: &rng)
                        for k in 0..<min(8, gpuHosts.count) {
                            block.append(hosts[gpuHosts[(first + k) % gpuHosts.count]])
                        }
                    }
                }
                block.sort { $0.name < $1.name }
                let startHour = fromHour + Int64.random(in: 0..<max(1, hours), using: &rng)
                let start = Mixed.base.seconds + 3600 * startHour
                let window = Interval(start: start, end: start + 3600 * Int64.random(in: 1...72, using: &rng))
                let result =
                    block.isEmpty
                    ? nil : LeasePlanner(hosts: block, calendar: calendar).place([request], window: window)
                guard case .success(let allocs)? = result else {
                    failedAttempts += 1  // no room in this block and window: draw another lease
                    continue
                }
                let n = placed
                let lease = Lease(
                    id: "p\(n)", name: "p", projectID: "p", userID: nil, start: Timestamp(seconds: window.start),
                    end: Timestamp(seconds: window.end), beforeEndSeconds: nil, status: .pending,
                    reservations: [
                        Reservation(id: "r\(n)", request: request, status: .pending, allocations: allocs[0])
                    ],
                    createdAt: Mixed.base)
                calendar.add(lease)
                allocations += allocs[0].count
                if keep { out.append(PlacedLease(request: request, window: window, allocations: allocs[0])) }
                placed += 1
                made += 1
            }
            return out
        }
    }
}
