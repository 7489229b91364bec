import BerthJSON

/// `preemptible.create` params: the instance's size, an optional GPU profile (checked against
/// `models`), guaranteed lifetime, Nova boot fields and the Slurm node it backs. Limits set by
/// policy (the longest guarantee) are the handler's.
public struct PreemptibleCreateParams: Sendable {
    public var projectID: String
    public var size: InstanceSize
    public var gpuProfile: String?
    public var minLifetime: Int64?
    public var server: JSON?
    public var slurmNode: String?

    public static func parse(_ params: JSON?, models: GPUModelTable) throws(BerthError) -> PreemptibleCreateParams {
        var r = ParamReader(params)
        let project = r.string("project_id", required: true)
        let vcpus = r.int("vcpus", required: true, min: 1, max: 1 << 20)
        let memory = r.int("memory_mb", required: true, min: 1, max: 1 << 40)
        let disk = r.int("disk_gb", required: true, min: 0, max: 1 << 40)
        let profile = r.string("gpu_profile")
        let lifetime = r.int("min_lifetime_s", min: 1, max: 100 * 366 * 86_400)
        var server: JSON? = nil
        if let s = r.raw("server") {
            if case .object = s {
                server = s
            } else {
                r.fail("server", "expected an object of Nova boot fields, got \(s.typeName)")
            }
        }
        let node = r.string("slurm_node", maxLength: 64)
        _ = r.raw("idempotency_key")
        if let node, !isSlurmNodeName(node) {
            r.fail("slurm_node", "must be one Slurm node name: letters, digits, '.', '_' or '-' (got '\(node)')")
        }
        if let profile {
            do throws(BerthError) {
                _ = try models.resolve(profile: profile, gpuModel: nil, path: "")
            } catch {
                for e in error.fieldErrors { r.fail("gpu_profile", e.message) }
            }
        }
        try r.finish()
        guard let project, let vcpus, let memory, let disk else {
            throw .invalidParam("params", "incomplete preemptible")
        }
        return PreemptibleCreateParams(
            projectID: project, size: InstanceSize(vcpus: vcpus, memoryMB: memory, diskGB: disk), gpuProfile: profile,
            minLifetime: lifetime, server: server, slurmNode: node)
    }

    /// One node name, not a hostlist expression (`n[1-3]`) or anything a shell would split.
    public static func isSlurmNodeName(_ s: String) -> Bool {
        !s.isEmpty
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E
                    || c == 0x5F || c == 0x2D
            }
    }
}
