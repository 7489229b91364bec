import BerthJSON

/// The host fields `host.create` and `host.update` share; nil means "not given".
public struct HostFields: Sendable {
    public var vcpus: Int64?
    public var memoryMB: Int64?
    public var diskGB: Int64?
    public var gpus: [GPUSpec]?
    public var properties: [String: JSON]?
    public var state: HostState?
    public var reservable: Bool?

    /// Reads the fields from `r` (problems go to `r`); `creating` makes the sizes required. GPU
    /// models must be in `models`.
    public static func read(_ r: inout ParamReader, creating: Bool, models: GPUModelTable) -> HostFields {
        let vcpus = r.int("vcpus", required: creating, min: 1, max: 1_000_000)
        let memory = r.int("memory_mb", required: creating, min: 1)
        let disk = r.int("disk_gb", required: creating, min: 0)
        var gpus: [GPUSpec]? = nil
        if let list = r.array("gpus") {
            var out: [GPUSpec] = []
            for (i, g) in list.enumerated() {
                var gr = ParamReader(g, path: "\(r.fieldPath("gpus"))[\(i)]")
                if let model = gr.string("model", required: true) {
                    if models.model(named: model) == nil {
                        gr.fail(
                            "model",
                            "unknown GPU model \"\(model)\"; known models: \(models.modelNames.joined(separator: ", ")) (operators add models in the GPU model file)"
                        )
                    } else {
                        out.append(GPUSpec(model: model))
                    }
                }
                gr.rejectUnknown()
                r.merge(gr.errors)
            }
            gpus = out
        }
        var properties: [String: JSON]? = nil
        if let p = r.raw("properties") {
            if let o = p.objectValue {
                for (k, v) in o.sorted(by: { $0.key < $1.key }) {
                    switch v {
                    case .string, .int, .double, .bool: continue
                    default: r.fail(path: "\(r.fieldPath("properties")).\(k)", "must be a string, number or boolean")
                    }
                }
                properties = o
            } else {
                r.fail("properties", "expected an object, got \(p.typeName)")
            }
        }
        let state = r.enumValue("state", HostState.self)
        let reservable = r.bool("reservable")
        return HostFields(
            vcpus: vcpus, memoryMB: memory, diskGB: disk, gpus: gpus, properties: properties, state: state,
            reservable: reservable)
    }
}
