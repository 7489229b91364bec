/// Narrowing: the few hosts a GPU or instance request can end up on in a big inventory.
extension LeasePlanner {
    /// Whether GPU and instance requests may be planned on a narrowed set of hosts (see
    /// `narrowedPositions`): no property filter, no `gpu_profile` on instances, a big inventory.
    func narrowingApplies(_ requests: [ReservationRequest]) -> Bool {
        hosts.count > exhaustiveRankingLimit
            && requests.contains { $0.kind != .host }
            && requests.allSatisfy { $0.kind == .host || ($0.properties == .all && $0.gpuProfile == nil) }
    }

    /// Whether a representative host of a class can serve a GPU or instance request.
    func classServes(_ h: Host, _ r: ReservationRequest) -> Bool {
        switch r.kind {
        case .host: return true
        case .gpu: return gpuIndices(h, r).contains { $0.1.mig }
        case .instance:
            return h.vcpus >= (r.vcpus ?? 0) && h.memoryMB >= (r.memoryMB ?? 0) && h.diskGB >= (r.diskGB ?? 0)
                && (r.gpuProfile == nil || !gpuIndices(h, r).isEmpty)
        }
    }

    /// The hosts a GPU or instance request (no property filter) can end up on under the packing
    /// order, as positions in name order: every host with GPU slices or instance slots held in
    /// the window (partly used: preferred), the hosts of current placements, and per class of
    /// identical hosts the `count` free ones that fit the window most tightly (free hosts of one
    /// class differ only in slack and name, which is how both orders break ties). Anything else is
    /// an equal but later choice, never taken while these remain.
    func narrowedPositions(
        _ requests: [ReservationRequest], window: Interval, keep: [[Allocation]], takenWhole: Set<String>
    ) -> [Int] {
        var numbers: [Int32] = []
        calendar.gpuUse.forEachOverlapping(window) { _, n in
            numbers.append(n)
            return true
        }
        // Both kinds for both requests: a host holding anything in the window is not free, so it
        // ranks by its own slack, not as one of the interchangeable free hosts of its class.
        calendar.instanceUse.forEachOverlapping(window) { _, n in
            numbers.append(n)
            return true
        }
        for ks in keep { for a in ks { if let n = calendar.number(of: a.host) { numbers.append(n) } } }
        var out = Set<Int>()
        for n in numbers { if let p = inventory.position(ofNumber: n), inventory.schedulable[p] { out.insert(p) } }
        let others = requests.filter { $0.kind != .host }
        let k = others.reduce(0) { $0 + Int($1.max) }
        for (c, cls) in inventory.classes.enumerated()
        where others.contains(where: { classServes(hosts[cls.representative], $0) }) {
            let found = tightestFree(window: window, count: k, minRank: 0) { pos in
                inventory.classOf[pos] == Int32(c) && (takenWhole.isEmpty || !takenWhole.contains(hosts[pos].name))
                    ? 0 : nil
            }
            out.formUnion(found)
        }
        return out.sorted()
    }
}
