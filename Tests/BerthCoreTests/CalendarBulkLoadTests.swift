import BerthJSON
import BerthTestSupport
import Testing

@testable import BerthCore

/// The bulk path of a restart (`CalendarBulkLoad`) must produce exactly the calendar that adding
/// every lease and then every preemptible one by one produces: the same hosts, entries, entry order
/// (equal windows in add order) and preemptible counts.
@Suite struct CalendarBulkLoadTests {
    static let base: Int64 = TestEpoch.roundSeconds.seconds

    /// Leases of every kind and status, on few hosts and few distinct windows, so that many entries
    /// share a host and a window; some windows are empty and some leases do not occupy the calendar.
    static func randomLeases(_ n: Int, hosts: Int, rng: inout SplitMix64) -> [Lease] {
        (0..<n).map { k in
            let start = base + 3600 * Int64.random(in: 0..<12, using: &rng)
            let length = 3600 * Int64.random(in: 0...3, using: &rng)  // 0: an empty window, never in the calendar
            func host() -> String { "h\(Int.random(in: 0..<hosts, using: &rng))" }
            var reservations: [Reservation] = []
            for r in 0..<Int.random(in: 1...2, using: &rng) {
                var request: ReservationRequest
                var allocations: [Allocation]
                switch Int.random(in: 0..<3, using: &rng) {
                case 0:
                    let count = Int.random(in: 1...3, using: &rng)
                    request = ReservationRequest(hosts: Int64(count))
                    allocations = (0..<count).map { _ in Allocation(host: host()) }
                case 1:
                    request = ReservationRequest(hosts: 1)
                    request.kind = .gpu
                    request.profile = Bool.random(using: &rng) ? "1g.5gb" : "1g.5gb+me"
                    let h = host()
                    allocations = (0..<Int.random(in: 1...3, using: &rng)).map { _ in
                        Allocation(
                            host: h, gpu: Int.random(in: 0..<4, using: &rng), profile: request.profile,
                            slot: Int.random(in: 0..<7, using: &rng), size: 1)
                    }
                default:
                    request = ReservationRequest(hosts: 1)
                    request.kind = .instance
                    request.vcpus = Int64.random(in: 1...8, using: &rng)
                    request.memoryMB = 1024
                    request.diskGB = 10
                    allocations = (0..<Int.random(in: 1...2, using: &rng)).map { _ in
                        Allocation(host: host(), slots: Int.random(in: 1...4, using: &rng))
                    }
                }
                reservations.append(
                    Reservation(id: "l\(k)-r\(r)", request: request, status: .pending, allocations: allocations))
            }
            return Lease(
                id: "l\(k)", name: "n\(k)", projectID: "p", userID: nil, start: Timestamp(seconds: start),
                end: Timestamp(seconds: start + length), beforeEndSeconds: nil,
                status: LeaseStatus.allCases.randomElement(using: &rng)!, reservations: reservations,
                createdAt: Timestamp(seconds: base))
        }
    }

    static func randomPreemptibles(_ n: Int, hosts: Int, rng: inout SplitMix64) -> [Preemptible] {
        (0..<n).map { k in
            let created = base + 3600 * Int64.random(in: 0..<12, using: &rng)
            let withSlice = Bool.random(using: &rng)
            var p = Preemptible(
                id: "p\(k)", projectID: "p", size: InstanceSize(vcpus: 2, memoryMB: 2048, diskGB: 20),
                gpuProfile: withSlice ? "1g.5gb" : nil, gpu: withSlice ? 0 : nil,
                slot: withSlice ? Int.random(in: 0..<7, using: &rng) : nil,
                sliceSize: withSlice ? 1 : nil, minLifetime: 3600, host: "h\(Int.random(in: 0..<hosts, using: &rng))",
                createdAt: Timestamp(seconds: created))
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: p.preemptAt = Timestamp(seconds: created + 7200)
            case 1: p.endedAt = Timestamp(seconds: created)  // never ran: no interval
            case 2: p.endedAt = Timestamp(seconds: created + 3600)
            default: break  // open-ended
            }
            return p
        }
    }

    static func compare(leases: [Lease], preemptibles: [Preemptible]) -> String? {
        var calendar = LeaseCalendar()
        for l in leases { calendar.add(l) }
        for p in preemptibles { calendar.add(p) }
        let lists = CalendarBulkLoad.entriesByHost(leases: leases, preemptibles: preemptibles)
        if CalendarBulkLoad.preemptibleCounts(lists) != calendar.preemptibleEntries {
            return "preemptible counts \(CalendarBulkLoad.preemptibleCounts(lists)) vs \(calendar.preemptibleEntries)"
        }
        let trees = CalendarBulkLoad.trees(lists)
        if Set(trees.keys) != Set(calendar.hostNames) {
            return "hosts \(trees.keys.sorted()) vs \(calendar.hostNames.sorted())"
        }
        let bulkCalendar = LeaseCalendar(sortedEntriesByHost: lists)
        if bulkCalendar.allocationCount != calendar.allocationCount { return "allocation counts differ" }
        if bulkCalendar.preemptibleEntries != calendar.preemptibleEntries {
            return "bulk calendar preemptible counts differ"
        }
        for host in calendar.hostNames {
            let bulk = trees[host]!
            if let problem = bulk.validate() { return "\(host): \(problem)" }
            let want = calendar.entries(host: host), got = bulk.entries, viaCalendar = bulkCalendar.entries(host: host)
            if want.map(\.interval) != got.map(\.interval) || want.map(\.payload) != got.map(\.payload) {
                return "\(host): entries differ\n  adds: \(want)\n  bulk: \(got)"
            }
            if want.map(\.interval) != viaCalendar.map(\.interval) || want.map(\.payload) != viaCalendar.map(\.payload)
            {
                return "\(host): bulk calendar entries differ"
            }
        }
        // The global indexes hold the same (time, host) pairs, whatever numbers the hosts got.
        func named(_ c: LeaseCalendar, _ items: [TimeIndex.Item]) -> [String] {
            items.map { "\($0.time) \(c.hostNames[Int($0.host)])" }.sorted()
        }
        if named(calendar, calendar.starts.items) != named(bulkCalendar, bulkCalendar.starts.items) {
            return "starts differ"
        }
        if named(calendar, calendar.ends.items) != named(bulkCalendar, bulkCalendar.ends.items) { return "ends differ" }
        func usage(_ c: LeaseCalendar, _ t: IntervalTree<Int32>) -> [String] {
            t.entries.map { "\($0.interval) \(c.hostNames[Int($0.payload)])" }.sorted()
        }
        if usage(calendar, calendar.gpuUse) != usage(bulkCalendar, bulkCalendar.gpuUse) {
            return "gpu usage index differs"
        }
        if usage(calendar, calendar.instanceUse) != usage(bulkCalendar, bulkCalendar.instanceUse) {
            return "instance usage index differs"
        }
        if bulkCalendar.gpuUse.validate() != nil || bulkCalendar.instanceUse.validate() != nil {
            return "usage trees invalid"
        }
        return nil
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func sameCalendarAsAddingOneByOne(_ seed: UInt64) {
        var rng = SplitMix64(seed: 0xCA1E_0000 + seed)
        let leases = Self.randomLeases(
            Int.random(in: 0...300, using: &rng), hosts: Int.random(in: 1...12, using: &rng), rng: &rng)
        let preemptibles = Self.randomPreemptibles(Int.random(in: 0...60, using: &rng), hosts: 6, rng: &rng)
        if let problem = Self.compare(leases: leases, preemptibles: preemptibles) {
            Issue.record("seed \(seed): \(problem)")
        }
    }

    @Test func emptyInputs() {
        #expect(CalendarBulkLoad.entriesByHost(leases: [Lease](), preemptibles: [Preemptible]()).isEmpty)
        #expect(CalendarBulkLoad.trees([:]).isEmpty)
    }

    /// The lists are sorted by window with add order among equal windows, whatever the leases' order.
    @Test func listsAreSortedWithAddOrderAmongEqualWindows() {
        var rng = SplitMix64(seed: 0x0DD_0BD)
        let leases = Self.randomLeases(200, hosts: 3, rng: &rng)
        for (host, list) in CalendarBulkLoad.entriesByHost(leases: leases, preemptibles: []) {
            for (a, b) in zip(list, list.dropFirst()) {
                #expect(!(b.0 < a.0), "\(host): \(b.0) after \(a.0)")
                if a.0 == b.0 {
                    let ia = leases.firstIndex { $0.id == a.1.leaseID }!,
                        ib = leases.firstIndex { $0.id == b.1.leaseID }!
                    #expect(ia <= ib, "\(host): equal windows out of add order")
                }
            }
        }
    }

    /// Stored leases of every kind come back equal through the store's JSON (the decoding a restart
    /// does for every lease).
    @Test func leasesRoundTripThroughStoredJSON() throws {
        var rng = SplitMix64(seed: 0x5709_ED)
        for var lease in Self.randomLeases(200, hosts: 5, rng: &rng) {
            lease.cost = ["host_hours": .int(Int64.random(in: 0...100, using: &rng))]
            lease.beforeEndFired = Bool.random(using: &rng)
            lease.degraded = Bool.random(using: &rng)
            lease.degradedReason = lease.degraded ? "host down" : nil
            let text = lease.json(internal: true).serialized()
            #expect(Lease(json: try JSONParser.parse(text)) == lease)
        }
    }
}
