import BerthCore
import BerthJSON
import BerthService

/// A small cloud to play with on a laptop: compute hosts in two racks and GPU hosts.
enum DemoInventory {
    static let hosts: [JSON] = {
        var out: [JSON] = []
        for i in 1...6 {
            out.append([
                "name": .string("compute-\(i < 10 ? "0" : "")\(i)"), "vcpus": 64, "memory_mb": 262_144, "disk_gb": 960,
                "properties": ["rack": .string(i <= 3 ? "r1" : "r2"), "ib": .string(i % 2 == 0 ? "true" : "false")],
            ])
        }
        for i in 1...2 {
            out.append([
                "name": .string("gpu-0\(i)"), "vcpus": 128, "memory_mb": 1_048_576, "disk_gb": 3840,
                "gpus": .array(Array(repeating: ["model": "A100-40GB"], count: 4)),
                "properties": ["rack": "r3", "ib": "true"],
            ])
        }
        return out
    }()

    /// The simulated cloud's flavors in the demo (Nova's shapes), one asking for a MIG slice.
    static let flavors: [CloudFlavor] = [
        CloudFlavor(id: "m1.small", name: "m1.small", vcpus: 1, memoryMB: 2048, diskGB: 20, extraSpecs: [:]),
        CloudFlavor(id: "m1.medium", name: "m1.medium", vcpus: 2, memoryMB: 4096, diskGB: 40, extraSpecs: [:]),
        CloudFlavor(id: "m1.large", name: "m1.large", vcpus: 4, memoryMB: 8192, diskGB: 80, extraSpecs: [:]),
        CloudFlavor(
            id: "g1.mig-1g", name: "g1.mig-1g", vcpus: 4, memoryMB: 16_384, diskGB: 40,
            extraSpecs: ["resources:\(MIGResourceClass.defaultName(for: "1g.5gb"))": "1"]),
    ]

    /// The simulated cloud's compute nodes: the demo hosts, and two not yet enrolled in Berth
    /// (`openstack reservation host create compute-07`).
    static let hypervisors: [Hypervisor] =
        hosts.compactMap { h in
            h["name"]?.stringValue.map {
                Hypervisor(
                    name: $0, vcpus: h["vcpus"]?.intValue ?? 0, memoryMB: h["memory_mb"]?.intValue ?? 0,
                    diskGB: h["disk_gb"]?.intValue ?? 0)
            }
        } + (7...8).map { Hypervisor(name: "compute-0\($0)", vcpus: 64, memoryMB: 262_144, diskGB: 960) }

    /// Creates the demo hosts when the inventory is empty; returns how many were created.
    static func seed(_ scheduler: Scheduler) async throws(BerthError) -> Int {
        guard await scheduler.hostCount == 0 else { return 0 }
        for h in hosts { _ = try await scheduler.call(.hostCreate, h) }
        return hosts.count
    }
}
