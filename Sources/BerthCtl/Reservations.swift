import ArgumentParser
import BerthJSON

/// One reservation written with options, or several as raw JSON (`--reservations`).
struct ReservationOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Reserve this many whole hosts.", valueName: "n")) var hosts: Int?
    @Option(name: .customLong("hosts-min"), help: ArgumentHelp("At least this many whole hosts...", valueName: "n"))
    var hostsMin: Int?
    @Option(name: .customLong("hosts-max"), help: ArgumentHelp("...and at most this many.", valueName: "n"))
    var hostsMax: Int?

    @Option(
        name: .customLong("gpu"),
        help: ArgumentHelp("Reserve GPU slices of this MIG profile (e.g. 1g.5gb); needs --count.", valueName: "profile")
    )
    var gpuProfile: String?
    @Option(name: .customLong("gpu-model"), help: ArgumentHelp("Only GPUs of this model.", valueName: "model"))
    var gpuModel: String?

    @Option(help: ArgumentHelp("Reserve instance slots of this many vCPUs each; needs --count.", valueName: "n"))
    var vcpus: Int?
    @Option(name: .customLong("memory-mb"), help: ArgumentHelp("Instance memory in MiB.", valueName: "n"))
    var memoryMB: Int?
    @Option(name: .customLong("disk-gb"), help: ArgumentHelp("Instance disk in GB.", valueName: "n"))
    var diskGB: Int?
    @Option(name: .customLong("instance-gpu"), help: ArgumentHelp("Instance GPU profile.", valueName: "profile"))
    var instanceGPUProfile: String?
    @Option(help: ArgumentHelp("Instance placement: same_host or different_host.", valueName: "affinity"))
    var affinity: String?

    @Option(help: ArgumentHelp("How many GPU slices or instances.", valueName: "n")) var count: Int?

    @Option(name: .customLong("property"), help: ArgumentHelp("Only hosts with this property.", valueName: "key=value"))
    var properties: [KeyValue] = []
    @Option(
        name: .customLong("properties-expr"),
        help: ArgumentHelp(
            #"A property expression, e.g. '["and", [">=", "$memory_mb", 4096], ["==", "$ib", "true"]]'."#,
            valueName: "json"),
        transform: parseJSONArgument)
    var propertiesExpr: JSON?

    @Option(
        name: .customLong("reservations"),
        help: ArgumentHelp(
            "The reservations as a JSON array (or one object), instead of the options above (- reads stdin, @file a file).",
            valueName: "json"),
        transform: parseJSONArgument)
    var reservationsJSON: JSON?

    private enum Kind { case hostCount, hostRange, gpu, instance }

    private var kinds: [Kind] {
        var k: [Kind] = []
        if hosts != nil { k.append(.hostCount) }
        if hostsMin != nil || hostsMax != nil { k.append(.hostRange) }
        if gpuProfile != nil || gpuModel != nil { k.append(.gpu) }
        if vcpus != nil || memoryMB != nil || diskGB != nil || instanceGPUProfile != nil || affinity != nil {
            k.append(.instance)
        }
        return k
    }

    private var anyShorthand: Bool {
        !kinds.isEmpty || count != nil || !properties.isEmpty || propertiesExpr != nil
    }

    var isGiven: Bool { reservationsJSON != nil || anyShorthand }

    static let hint =
        "give --hosts N, --hosts-min A --hosts-max B, --gpu PROFILE --count N, "
        + "--vcpus/--memory-mb/--disk-gb --count N, or --reservations JSON"

    func validate() throws {
        if let raw = reservationsJSON {
            if anyShorthand { throw ValidationError("give either --reservations or the reservation options, not both") }
            switch raw {
            case .array, .object: break
            default: throw ValidationError("--reservations must be a JSON array of reservations (or one object)")
            }
            return
        }
        guard anyShorthand else { return }
        let k = kinds
        if k.count > 1 {
            throw ValidationError("one reservation kind at a time; use --reservations JSON for several")
        }
        guard let kind = k.first else { throw ValidationError("which resources? \(Self.hint)") }
        if !properties.isEmpty && propertiesExpr != nil {
            throw ValidationError("give either --property or --properties-expr, not both")
        }
        switch kind {
        case .hostCount:
            if count != nil { throw ValidationError("--hosts already gives the count; drop --count") }
        case .hostRange:
            if hostsMin == nil || hostsMax == nil { throw ValidationError("--hosts-min and --hosts-max go together") }
            if count != nil { throw ValidationError("--count does not apply to --hosts-min/--hosts-max") }
        case .gpu:
            if gpuProfile == nil { throw ValidationError("--gpu-model needs --gpu PROFILE") }
            if count == nil { throw ValidationError("--gpu needs --count N") }
        case .instance:
            if vcpus == nil || memoryMB == nil || diskGB == nil {
                throw ValidationError("an instance reservation needs --vcpus, --memory-mb and --disk-gb")
            }
            if count == nil { throw ValidationError("an instance reservation needs --count N") }
        }
    }

    /// The `reservations` parameter, or nil when none was given.
    var reservations: JSON? {
        if let raw = reservationsJSON {
            if case .object = raw { return .array([raw]) }
            return raw
        }
        guard let kind = kinds.first else { return nil }
        var r: JSON
        switch kind {
        case .hostCount:
            r = ["kind": "host", "count": JSON(hosts!)]
        case .hostRange:
            r = ["kind": "host", "min": JSON(hostsMin!), "max": JSON(hostsMax!)]
        case .gpu:
            r = ["kind": "gpu", "profile": .string(gpuProfile!)]
            r.set("count", count.json)
            r.set("gpu_model", gpuModel.json)
        case .instance:
            r = ["kind": "instance", "vcpus": JSON(vcpus!), "memory_mb": JSON(memoryMB!), "disk_gb": JSON(diskGB!)]
            r.set("count", count.json)
            r.set("gpu_profile", instanceGPUProfile.json)
            r.set("affinity", affinity.json)
        }
        if let propertiesExpr {
            r.set("properties", propertiesExpr)
        } else if !properties.isEmpty {
            r.set("properties", properties.jsonObject)
        }
        return .array([r])
    }
}
