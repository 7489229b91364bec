// Prints berth-bench's population and the answers to its allocator requests, computed by Berth's
// own LeasePlanner (the code of Sources/berth-bench/PeerSet.swift's population and allocator loop),
// in the format of `bench_blazar.py --dump`: verify_port.sh compiles it with Sources/BerthJSON,
// Sources/BerthCore and Tests/BerthTestSupport/SplitMix64.swift into one module and diffs the two. Usage: verify HOSTS LEASES REQUESTS
#if canImport(Glibc)
import Glibc
#endif
let args = CommandLine.arguments
let hostCount = Int(args[1])!, leaseCount = Int(args[2])!, nreq = Int(args[3])!
let base = Timestamp(rfc3339: "2030-01-01T00:00:00Z")!
let horizon: Int64 = 60 * 86_400
var rng = SplitMix64(seed: 42)
let hosts = (0..<hostCount).map { i in
    Host(name: "h\(String(i + 100_000).dropFirst())", vcpus: 64, memoryMB: 262_144, diskGB: 960,
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
    print("L \((window.start - base.seconds) / 3600) \((window.end - base.seconds) / 3600) \(allocs[0].map(\.host).sorted().joined(separator: ","))")
    placed += 1
}
var r7 = SplitMix64(seed: 7)
let planner = LeasePlanner(hosts: hosts, calendar: calendar)
for _ in 0..<nreq {
    let start = base + 3600 * Int64.random(in: 0..<(horizon / 3600), using: &r7)
    let window = Interval(start: start.seconds, end: start.seconds + 3600 * Int64.random(in: 1...72, using: &r7))
    let request = ReservationRequest(hosts: Int64.random(in: 1...4, using: &r7))
    var line = "R"
    if case .success(let a) = planner.place([request], window: window) { line += " " + a[0].map(\.host).sorted().joined(separator: ",") } else { line += " -" }
    let rack = Int.random(in: 0..<20, using: &r7)
    let filtered = ReservationRequest(hosts: 2, properties: .equalities(["rack": .string("r\(rack)")]))
    if case .success(let a) = planner.place([filtered], window: window) { line += " " + a[0].map(\.host).sorted().joined(separator: ",") } else { line += " -" }
    print(line)
}
