import BerthJSON

/// A Berth host as Blazar's `os-hosts` shows it: Nova's hypervisor fields (`hypervisor_hostname`,
/// `local_gb`, ...), the integer id as a string, and the host's properties flat as Blazar's
/// extra capabilities (strings). Berth's `state` and `gpus` are extra members.
enum BlazarHostView {
    /// Names a property cannot take as an extra capability without hiding a host field.
    static let reserved: Set<String> = [
        "id", "hypervisor_hostname", "service_name", "vcpus", "cpu_info", "hypervisor_type", "hypervisor_version",
        "memory_mb", "local_gb", "status", "availability_zone", "trust_id", "reservable", "created_at", "updated_at",
        "name", "state", "gpus", "disk_gb", "properties",
    ]

    static func host(_ h: JSON) -> JSON {
        let name = h["name"] ?? .null
        var o: [String: JSON] = [
            "id": .string(String(h["id"]?.intValue ?? 0)),
            "hypervisor_hostname": name, "service_name": name,
            "vcpus": h["vcpus"] ?? 0, "memory_mb": h["memory_mb"] ?? 0, "local_gb": h["disk_gb"] ?? 0,
            "cpu_info": "", "hypervisor_type": "", "hypervisor_version": 0,
            "reservable": h["reservable"] ?? true, "status": .null, "availability_zone": .null, "trust_id": .null,
            "created_at": BlazarDate.record(h["created_at"]?.stringValue),
            "updated_at": BlazarDate.record(h["updated_at"]?.stringValue),
            "state": h["state"] ?? "up", "gpus": h["gpus"] ?? .array([]),
        ]
        for (k, v) in h["properties"]?.objectValue ?? [:] where !reserved.contains(k) { o[k] = .string(text(v)) }
        return .object(o)
    }

    /// An extra capability's value as Blazar shows it: always a string.
    static func text(_ v: JSON) -> String {
        switch v {
        case .string(let s): return s
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        default: return v.serialized()
        }
    }
}
