import BerthContract
import BerthCore
import BerthJSON

/// Instance reservations that name a cloud flavor (`flavor_id`) instead of a size: before the
/// scheduler sees the request, the flavor is read from the cloud and its vcpus, memory, disk and
/// MIG slice are written into the reservation, with the flavor itself as `source_flavor`. The
/// scheduler then plans an ordinary instance reservation; the cloud is asked outside the actor,
/// so a slow cloud delays only the request that named a flavor.
struct FlavorResolution: Sendable {
    let catalog: any CloudCatalog
    let models: GPUModelTable

    /// The methods whose `reservations` may name flavors.
    static func applies(to method: RPCMethod) -> Bool {
        method == .leaseCreate || method == .leaseUpdate || method == .availabilityFind
    }

    /// `params` with every `flavor_id` replaced by the flavor's resources; unchanged when none names one.
    func resolve(_ params: JSON?) async throws(BerthError) -> JSON? {
        guard case .object(var p) = params, case .array(var list) = p["reservations"] else { return params }
        var errors: [BerthError.FieldError] = []
        var changed = false
        for i in list.indices {
            guard case .object(var r) = list[i], r["kind"]?.stringValue == ReservationKind.instance.rawValue else {
                continue
            }
            let path = "reservations[\(i)]"
            if r["source_flavor"] != nil {
                // An existing reservation echoed back keeps the flavor it was made from (the
                // scheduler carries it over); a new one gets it only from flavor_id.
                guard r["id"] != nil else {
                    errors.append(.init(path: "\(path).source_flavor", message: "is set by Berth from flavor_id"))
                    continue
                }
                r["source_flavor"] = nil
                list[i] = .object(r)
                changed = true
            }
            guard let raw = r["flavor_id"] else { continue }
            guard let id = raw.stringValue, !id.isEmpty, id.utf8.count <= 255 else {
                errors.append(.init(path: "\(path).flavor_id", message: "expected a flavor id (non-empty string)"))
                continue
            }
            let sized = ["vcpus", "memory_mb", "disk_gb", "gpu_profile"].filter { r[$0] != nil }
            if !sized.isEmpty {
                errors.append(
                    .init(
                        path: "\(path).flavor_id",
                        message: "give either flavor_id or \(sized.joined(separator: "/")), not both"))
                continue
            }
            guard let flavor = try await catalog.flavor(id: id) else {
                errors.append(.init(path: "\(path).flavor_id", message: "the cloud has no flavor '\(id)'"))
                continue
            }
            r["flavor_id"] = nil
            r["vcpus"] = .int(max(flavor.vcpus, 1))
            r["memory_mb"] = .int(max(flavor.memoryMB, 1))
            r["disk_gb"] = .int(max(flavor.diskGB, 0))
            if let profile = flavor.gpuProfile(profiles: models.profileNames, classOf: catalog.resourceClass(for:)) {
                r["gpu_profile"] = .string(profile)
            }
            r["source_flavor"] = flavor.json
            list[i] = .object(r)
            changed = true
        }
        if !errors.isEmpty { throw BerthError.invalidParams(errors) }
        guard changed else { return params }
        p["reservations"] = .array(list)
        return .object(p)
    }
}
