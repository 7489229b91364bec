import BerthContract
import BerthCore
import BerthJSON
import BerthStore
import BerthTestSupport
import Logging
import Testing

@testable import BerthService

/// Where every scheduler test's manual clock starts.
let epoch = TestEpoch.year2030

func makeScheduler(_ dir: String) throws -> Scheduler {
    let store = try BerthStore(directory: dir)
    return try Scheduler(store: store, clock: BerthClock(mode: .manual, initial: epoch), logger: Logger(label: "test"))
}

/// Random sequences of creates, updates, deletes and clock moves, checked after every step against
/// a brute-force oracle: no host is ever held by two leases at once, a request is refused exactly
/// when the oracle finds too few free hosts, and a restart rebuilds exactly the acknowledged state.
@Suite struct SchedulerPropertyTests {
    static let hostCount = 5

    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func noDoubleBookingAndNoFalseRefusals(seed: UInt64) async throws {
        let dir = temporaryDirectory()
        let s = try makeScheduler(dir)
        for i in 0..<Self.hostCount {
            _ = try await s.call(.hostCreate, ["name": .string("h\(i)"), "vcpus": 8, "memory_mb": 1024, "disk_gb": 10])
        }
        var rng = SplitMix64(seed: seed)
        var now = epoch
        for step in 0..<250 {
            let all = try await leasesByID(s)
            let live = all.values.filter { $0.status == .pending || $0.status == .active }
            let op = Int.random(in: 0..<10, using: &rng)
            if op < 5 || live.isEmpty {
                let start = now + 3600 * Int64.random(in: 0..<48, using: &rng)
                let end = start + 3600 * Int64.random(in: 1..<24, using: &rng)
                let count = Int64.random(in: 1...3, using: &rng)
                let expected = freeHosts(all.values, start: start, end: end, except: nil) >= count
                let outcome = await attempt(
                    s, .leaseCreate,
                    [
                        "name": "l", "project_id": "p", "start": .string(start.rfc3339), "end": .string(end.rfc3339),
                        "reservations": [["kind": "host", "count": .int(count)]],
                    ])
                switch outcome {
                case .success:
                    #expect(expected, "seed \(seed) step \(step): accepted a lease the oracle says cannot fit")
                case .failure(let e):
                    #expect(e.code == .noCapacity, "seed \(seed) step \(step): \(e)")
                    #expect(!expected, "seed \(seed) step \(step): refused a lease that fits: \(e)")
                }
            } else if op < 7 {
                let l = live.sorted { $0.id < $1.id }[Int.random(in: 0..<live.count, using: &rng)]
                let newEnd = max(l.start, now) + 3600 * Int64.random(in: 1..<30, using: &rng)
                let count = Int64.random(in: 1...3, using: &rng)
                let expected = freeHosts(all.values, start: l.start, end: newEnd, except: l.id) >= count
                let outcome = await attempt(
                    s, .leaseUpdate,
                    [
                        "id": .string(l.id), "end": .string(newEnd.rfc3339),
                        "reservations": [["kind": "host", "count": .int(count)]],
                    ])
                switch outcome {
                case .success:
                    #expect(expected, "seed \(seed) step \(step): update accepted beyond capacity")
                case .failure(let e):
                    #expect(e.code == .noCapacity || e.code == .invalidParams, "seed \(seed) step \(step): \(e)")
                    if e.code == .noCapacity {
                        #expect(!expected, "seed \(seed) step \(step): update refused though it fits")
                    }
                }
            } else if op < 8 {
                let l = live.sorted { $0.id < $1.id }[Int.random(in: 0..<live.count, using: &rng)]
                _ = try await s.call(.leaseDelete, ["id": .string(l.id)])
            } else {
                now = now + 600 * Int64.random(in: 1...12, using: &rng)
                _ = try await s.call(.clockSet, ["now": .string(now.rfc3339)])
            }
            let after = try await leasesByID(s)
            try checkNoOverlap(after.values, context: "seed \(seed) step \(step)")
            for l in after.values where l.status == .pending {
                #expect(l.start > now, "seed \(seed) step \(step): lease \(l.id) still pending after its start")
            }
        }
        // A restart rebuilds exactly what was acknowledged.
        let before = try await leasesByID(s)
        let reopened = try makeScheduler(dir)
        let again = try await leasesByID(reopened)
        #expect(before == again)
    }

    func attempt(_ s: Scheduler, _ method: RPCMethod, _ params: JSON) async -> Result<JSON, BerthError> {
        do {
            return .success(try await s.call(method, params))
        } catch {
            return .failure(error)
        }
    }

    func leasesByID(_ s: Scheduler) async throws -> [String: Lease] {
        var out: [String: Lease] = [:]
        var cursor: JSON = .null
        repeat {
            var params: [String: JSON] = ["limit": 1000]
            if !cursor.isNull { params["cursor"] = cursor }
            let page = try await s.call(.leaseList, .object(params))
            for item in page["items"]?.arrayValue ?? [] {
                var full = item
                if case .object(var o) = item {
                    o["before_end_fired"] = false
                    full = .object(o)
                }
                let l = try #require(Lease(json: full))
                out[l.id] = l
            }
            cursor = page["next_cursor"] ?? .null
        } while !cursor.isNull
        return out
    }

    func freeHosts(_ leases: Dictionary<String, Lease>.Values, start: Timestamp, end: Timestamp, except: String?)
        -> Int64
    {
        var busy: Set<String> = []
        for l in leases where l.id != except && (l.status == .pending || l.status == .active || l.status == .ended) {
            if l.start < end && start < l.end {
                for r in l.reservations { for a in r.allocations { busy.insert(a.host) } }
            }
        }
        return Int64(Self.hostCount - busy.count)
    }

    func checkNoOverlap(_ leases: Dictionary<String, Lease>.Values, context: String) throws {
        let holding = leases.filter { $0.status == .pending || $0.status == .active || $0.status == .ended }
        var byHost: [String: [(Timestamp, Timestamp, String)]] = [:]
        for l in holding {
            for r in l.reservations {
                for a in r.allocations { byHost[a.host, default: []].append((l.start, l.end, l.id)) }
            }
        }
        for (host, list) in byHost {
            for i in list.indices {
                for j in list.indices where i < j {
                    let a = list[i], b = list[j]
                    #expect(!(a.0 < b.1 && b.0 < a.1), "\(context): \(host) double-booked by \(a.2) and \(b.2)")
                }
            }
        }
    }
}
