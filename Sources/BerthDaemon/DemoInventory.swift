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

    /// Creates the demo hosts when the inventory is empty; returns how many were created.
    static func seed(_ scheduler: Scheduler) async throws(BerthError) -> Int {
        guard await scheduler.hostCount == 0 else { return 0 }
        for h in hosts { _ = try await scheduler.call(.hostCreate, h) }
        return hosts.count
    }
}
