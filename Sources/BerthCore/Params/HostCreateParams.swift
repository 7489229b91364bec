import BerthJSON

/// `host.create` params: a valid new name and the required sizes, with optional GPUs, properties,
/// state and reservability.
public struct HostCreateParams: Sendable {
    public var name: String
    public var vcpus: Int64
    public var memoryMB: Int64
    public var diskGB: Int64
    public var gpus: [GPUSpec]?
    public var properties: [String: JSON]?
    public var state: HostState?
    public var reservable: Bool?

    public static func parse(_ params: JSON?, models: GPUModelTable) throws(BerthError) -> HostCreateParams {
        var r = ParamReader(params)
        let name = r.string("name", required: true, maxLength: 63)
        if let name, !Host.isValidName(name) {
            r.fail("name", Host.invalidNameMessage)
        }
        let f = HostFields.read(&r, creating: true, models: models)
        _ = r.raw("idempotency_key")
        try r.finish()
        guard let name, let vcpus = f.vcpus, let memory = f.memoryMB, let disk = f.diskGB else {
            throw .invalidParam("params", "incomplete host")
        }
        return HostCreateParams(
            name: name, vcpus: vcpus, memoryMB: memory, diskGB: disk, gpus: f.gpus, properties: f.properties,
            state: f.state, reservable: f.reservable)
    }
}
