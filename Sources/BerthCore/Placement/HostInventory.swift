/// The hosts a planner chooses among, in name order, tied to a calendar's host numbers.
///
/// Built once when the hosts change (not per request: at 10,000 hosts, hashing every name per
/// request would cost more than the whole placement), so the planner can go from a calendar's
/// host number to the `Host` in O(1), and knows how many hosts are schedulable without a scan.
public struct HostInventory: Sendable {
    /// In name order (the planner's tie-break order).
    public let hosts: [Host]
    /// Calendar number of `hosts[i]`.
    let numbers: [Int32]
    /// Position in `hosts` of a calendar number; -1 for numbers of hosts not in the inventory.
    let positions: [Int32]
    /// Per position: whether the host is up and reservable, and its GPU count (hot-loop copies of
    /// `hosts[i]` fields: reading them from `Host` would retain its strings and arrays).
    let schedulable: [Bool]
    let gpuCounts: [Int]
    /// Hosts that are up and reservable.
    public let schedulableCount: Int
    /// Fewest GPUs on a schedulable host (the packing rank of whole-host requests).
    let fewestGPUs: Int
    /// Schedulable hosts grouped by what a GPU or instance request can tell apart (size and GPU
    /// models): requests without a property filter are checked per class, not per host.
    let classes: [HostClass]
    /// Class of each position; -1 for hosts that are not schedulable.
    let classOf: [Int32]

    struct HostClass: Hashable {
        var vcpus: Int64
        var memoryMB: Int64
        var diskGB: Int64
        var gpuModels: [String]
        /// A member (position), standing for all of them.
        var representative: Int
        var members: Int

        static func key(_ h: Host) -> [String] {
            ["\(h.vcpus)", "\(h.memoryMB)", "\(h.diskGB)"] + h.gpus.map(\.model)
        }
    }

    /// Gives every host a number in `calendar` (registering the new ones).
    public init(hosts: [Host], calendar: inout LeaseCalendar) {
        let sorted =
            zip(hosts, hosts.dropFirst()).allSatisfy { $0.name < $1.name } ? hosts : hosts.sorted { $0.name < $1.name }
        self.hosts = sorted
        numbers = sorted.map { calendar.number(for: $0.name) }
        var positions = [Int32](repeating: -1, count: calendar.hostNames.count)
        for (i, n) in numbers.enumerated() { positions[Int(n)] = Int32(i) }
        self.positions = positions
        schedulable = sorted.map(\.isSchedulable)
        gpuCounts = sorted.map(\.gpus.count)
        schedulableCount = sorted.reduce(0) { $0 + ($1.isSchedulable ? 1 : 0) }
        fewestGPUs = sorted.lazy.filter(\.isSchedulable).map(\.gpus.count).min() ?? 0
        var classIndex: [[String]: Int32] = [:]
        var classes: [HostClass] = []
        var classOf = [Int32](repeating: -1, count: sorted.count)
        for (i, h) in sorted.enumerated() where h.isSchedulable {
            let key = HostClass.key(h)
            if let c = classIndex[key] {
                classes[Int(c)].members += 1
                classOf[i] = c
            } else {
                classIndex[key] = Int32(classes.count)
                classOf[i] = Int32(classes.count)
                classes.append(
                    HostClass(
                        vcpus: h.vcpus, memoryMB: h.memoryMB, diskGB: h.diskGB, gpuModels: h.gpus.map(\.model),
                        representative: i, members: 1))
            }
        }
        self.classes = classes
        self.classOf = classOf
    }

    /// Whether this inventory's numbers are those of `calendar` (it was built on it or on an
    /// ancestor: numbers are only ever appended).
    func matches(_ calendar: LeaseCalendar) -> Bool {
        guard positions.count <= calendar.hostNames.count else { return false }
        guard let i = numbers.indices.last else { return true }
        return calendar.hostNames[Int(numbers[i])] == hosts[i].name
            && calendar.hostNames[Int(numbers[0])] == hosts[0].name
    }

    @inline(__always)
    func position(ofNumber n: Int32) -> Int? {
        guard Int(n) < positions.count else { return nil }
        let p = positions[Int(n)]
        return p < 0 ? nil : Int(p)
    }
}
