import BerthJSON

/// Whether a host can hold allocations right now.
public enum HostState: String, Sendable, CaseIterable {
    case up, down, maintenance
}

/// A GPU fitted in a host, named by model (see the GPU model table).
public struct GPUSpec: Sendable, Hashable {
    public var model: String
    public init(model: String) { self.model = model }
}

/// A physical host that can be reserved whole or carved into slots.
public struct Host: Sendable, Hashable {
    /// A small integer fixed at creation and never reused: Blazar's clients address hosts by it.
    /// Berth's own methods address hosts by `name`.
    public var id: Int64
    public var name: String
    public var vcpus: Int64
    public var memoryMB: Int64
    public var diskGB: Int64
    public var gpus: [GPUSpec]
    /// Operator-defined labels (`rack`, `ib`, ...): strings, numbers or booleans.
    public var properties: [String: JSON]
    public var state: HostState
    public var reservable: Bool
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(
        name: String, vcpus: Int64, memoryMB: Int64, diskGB: Int64, gpus: [GPUSpec] = [],
        properties: [String: JSON] = [:], state: HostState = .up, reservable: Bool = true,
        createdAt: Timestamp, updatedAt: Timestamp, id: Int64 = 0
    ) {
        self.id = id
        self.name = name
        self.vcpus = vcpus
        self.memoryMB = memoryMB
        self.diskGB = diskGB
        self.gpus = gpus
        self.properties = properties
        self.state = state
        self.reservable = reservable
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Whether new allocations may be placed on this host at all.
    public var isSchedulable: Bool { reservable && state == .up }

    /// The value a property filter sees for `$field`: built-in fields first, then properties.
    public func field(_ name: String) -> JSON? {
        switch name {
        case "name": return .string(self.name)
        case "vcpus": return .int(vcpus)
        case "memory_mb": return .int(memoryMB)
        case "disk_gb": return .int(diskGB)
        case "state": return .string(state.rawValue)
        case "gpu_count": return .int(Int64(gpus.count))
        default: return properties[name]
        }
    }

    public var json: JSON {
        .object([
            "id": .int(id),
            "name": .string(name),
            "vcpus": .int(vcpus),
            "memory_mb": .int(memoryMB),
            "disk_gb": .int(diskGB),
            "gpus": .array(gpus.map { ["model": .string($0.model)] }),
            "properties": .object(properties),
            "state": .string(state.rawValue),
            "reservable": .bool(reservable),
            "created_at": .string(createdAt.rfc3339),
            "updated_at": .string(updatedAt.rfc3339),
        ])
    }

    /// Rebuilds a host from its stored JSON (the same shape as `json`).
    public init?(json: JSON) {
        guard let name = json["name"]?.stringValue, let vcpus = json["vcpus"]?.intValue,
            let mem = json["memory_mb"]?.intValue, let disk = json["disk_gb"]?.intValue,
            let state = json["state"]?.stringValue.flatMap(HostState.init(rawValue:)),
            let created = json["created_at"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
            let updated = json["updated_at"]?.stringValue.flatMap(Timestamp.init(rfc3339:))
        else { return nil }
        self.init(
            name: name, vcpus: vcpus, memoryMB: mem, diskGB: disk,
            gpus: (json["gpus"]?.arrayValue ?? []).compactMap { $0["model"]?.stringValue.map(GPUSpec.init(model:)) },
            properties: json["properties"]?.objectValue ?? [:], state: state,
            reservable: json["reservable"]?.boolValue ?? true, createdAt: created, updatedAt: updated,
            id: json["id"]?.intValue ?? 0)
    }
}
