import BerthJSON

/// What the cloud knows that a request may name but Berth does not keep: flavors (an instance
/// reservation may copy one) and hypervisors (a host enrolled by name takes its size from one).
/// The simulator answers from its own catalog, the `openstack` adapter from Nova.
public protocol CloudCatalog: Sendable {
    /// The flavor with this id, as Nova shows it (`id`, `name`, `vcpus`, `ram`, `disk`,
    /// `extra_specs`); nil when the cloud has none. Failures to ask are `upstream_error`.
    func flavor(id: String) async throws(BerthError) -> CloudFlavor?
    /// The compute node with this hypervisor hostname; nil when the cloud has none.
    func hypervisor(named name: String) async throws(BerthError) -> Hypervisor?
    /// The placement resource class that asks for a slice of this MIG profile on this cloud.
    func resourceClass(for profile: String) -> String
}

extension CloudCatalog {
    public func resourceClass(for profile: String) -> String { MIGResourceClass.defaultName(for: profile) }
}

/// A flavor as the cloud describes it; `json` is Nova's own object, kept for display.
public struct CloudFlavor: Sendable, Hashable {
    public var id: String
    public var name: String
    public var vcpus: Int64
    public var memoryMB: Int64
    public var diskGB: Int64
    public var extraSpecs: [String: String]

    public init(id: String, name: String, vcpus: Int64, memoryMB: Int64, diskGB: Int64, extraSpecs: [String: String]) {
        self.id = id
        self.name = name
        self.vcpus = vcpus
        self.memoryMB = memoryMB
        self.diskGB = diskGB
        self.extraSpecs = extraSpecs
    }

    /// Reads Nova's flavor object (`ram`, `disk`; `extra_specs` as returned since microversion 2.61).
    public init?(nova json: JSON) {
        guard let id = json["id"]?.stringValue, let vcpus = json["vcpus"]?.intValue,
            let ram = json["ram"]?.intValue
        else { return nil }
        var specs: [String: String] = [:]
        for (k, v) in json["extra_specs"]?.objectValue ?? [:] {
            specs[k] = v.stringValue ?? v.intValue.map(String.init) ?? v.boolValue.map { $0 ? "true" : "false" }
        }
        self.init(
            id: id, name: json["name"]?.stringValue ?? id, vcpus: vcpus, memoryMB: ram,
            diskGB: json["disk"]?.intValue ?? 0, extraSpecs: specs)
    }

    /// Nova's shape: what a reservation made from this flavor shows as its source.
    public var json: JSON {
        .object([
            "id": .string(id), "name": .string(name), "vcpus": .int(vcpus), "ram": .int(memoryMB),
            "disk": .int(diskGB), "extra_specs": .object(extraSpecs.mapValues { .string($0) }),
        ])
    }

    /// The MIG profile the flavor asks for: an extra spec `resources:<class>` of at least 1 whose
    /// class is one a known profile maps to. `classOf` is the site's profile → class mapping.
    public func gpuProfile(profiles: some Sequence<String>, classOf: (String) -> String) -> String? {
        let wanted = Set(
            extraSpecs.compactMap { k, v -> String? in
                guard k.hasPrefix("resources:"), let n = Int(v), n >= 1 else { return nil }
                return String(k.dropFirst("resources:".count))
            })
        guard !wanted.isEmpty else { return nil }
        return profiles.sorted().first { wanted.contains(classOf($0)) }
    }
}

/// A compute node's size as the cloud reports it (Nova's hypervisor: `vcpus`, `memory_mb`, `local_gb`).
public struct Hypervisor: Sendable, Hashable {
    public var name: String
    public var vcpus: Int64
    public var memoryMB: Int64
    public var diskGB: Int64
    /// What else the cloud says about it (`hypervisor_type`, `cpu_info`, ...), shown as given.
    public var details: [String: JSON]

    public init(name: String, vcpus: Int64, memoryMB: Int64, diskGB: Int64, details: [String: JSON] = [:]) {
        self.name = name
        self.vcpus = vcpus
        self.memoryMB = memoryMB
        self.diskGB = diskGB
        self.details = details
    }
}

/// The placement resource class a MIG profile is requested with when the site names none:
/// `CUSTOM_MIG_` and the profile in upper case, other characters as `_` (`1g.5gb` → `CUSTOM_MIG_1G_5GB`).
public enum MIGResourceClass {
    public static func defaultName(for profile: String) -> String {
        "CUSTOM_MIG_" + profile.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }
}
