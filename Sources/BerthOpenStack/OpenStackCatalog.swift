import BerthCore
import BerthJSON

/// Flavors and hypervisors read from Nova, for `flavor_id` reservations and for hosts enrolled
/// by name through the Blazar API.
extension OpenStackAdapter: CloudCatalog {
    public func flavor(id: String) async throws(BerthError) -> CloudFlavor? {
        let json: JSON?
        do throws(OpenStackError) {
            // At 2.79 a flavor carries its extra specs (2.61), so one request is enough.
            json = try await connection().nova.flavor(id)
        } catch {
            throw BerthError(.upstreamError, "cannot read flavor '\(id)' from Nova: \(error.description)")
        }
        guard let json else { return nil }
        guard let flavor = CloudFlavor(nova: json) else {
            throw BerthError(.upstreamError, "Nova's flavor '\(id)' has no vcpus or ram")
        }
        return flavor
    }

    public func hypervisor(named name: String) async throws(BerthError) -> Hypervisor? {
        do throws(OpenStackError) {
            let list = try await connection().nova.hypervisors(matching: name)
            // The pattern matches substrings: only the exact hostname counts.
            guard let h = list.first(where: { $0["hypervisor_hostname"]?.stringValue == name }) else { return nil }
            var details: [String: JSON] = [:]
            for k in ["hypervisor_type", "hypervisor_version", "cpu_info", "service", "status", "state", "id"] {
                if let v = h[k] { details[k] = v }
            }
            return Hypervisor(
                name: name, vcpus: h["vcpus"]?.intValue ?? 0, memoryMB: h["memory_mb"]?.intValue ?? 0,
                diskGB: h["local_gb"]?.intValue ?? 0, details: details)
        } catch {
            throw BerthError(.upstreamError, "cannot read hypervisor '\(name)' from Nova: \(error.description)")
        }
    }

    public func resourceClass(for profile: String) -> String { settings.resourceClass(for: profile) }
}
