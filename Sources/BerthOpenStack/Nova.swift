import BerthJSON
import Foundation
import NIOHTTP1

/// Nova's compute API at one pinned microversion.
///
/// 2.79 (Train) is pinned: it has `host` in `POST /servers` (2.74, so a preemptible boots on the
/// host Berth chose), aggregate UUIDs (2.41), flavor descriptions (2.55), and is offered by every
/// Nova still maintained. Every request carries `OpenStack-API-Version: compute 2.79`.
struct NovaClient: Sendable {
    static let microversion = "2.79"

    let keystone: KeystoneSession
    let http: OpenStackHTTP
    let interface: String
    let region: String?

    /// One request, authenticated; a 401 re-authenticates once and retries.
    func call(_ method: HTTPMethod, _ path: String, body: JSON? = nil, accept: Set<Int> = [])
        async throws(OpenStackError)
        -> HTTPResult
    {
        var attempt = 0
        while true {
            attempt += 1
            let token = try await keystone.current()
            guard
                let base = KeystoneSession.endpoint(
                    type: "compute", interface: interface, region: region, catalog: token.catalog)
            else {
                throw .config(
                    "the catalog has no compute endpoint for interface \(interface)\(region.map { " in region \($0)" } ?? "")"
                )
            }
            let url = base + path
            let r = try await http.send(
                method, url,
                headers: [("X-Auth-Token", token.id), ("OpenStack-API-Version", "compute \(NovaClient.microversion)")],
                body: body)
            if r.status == 401 && attempt == 1 {
                await keystone.invalidate(token.id)
                continue
            }
            if (200..<300).contains(r.status) || accept.contains(r.status) { return r }
            throw OpenStackHTTP.failure(r, method: method, url: url)
        }
    }

    /// One path segment, percent-encoded: ids that come from users never change the path.
    static func pathSegment(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    static func query(_ items: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return items.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(
            separator: "&")
    }

    // MARK: Aggregates

    func aggregates() async throws(OpenStackError) -> [JSON] {
        try await call(.GET, "/os-aggregates").body?["aggregates"]?.arrayValue ?? []
    }

    /// The aggregate named `name`, created if missing (a concurrent or earlier create counts).
    func ensureAggregate(name: String) async throws(OpenStackError) -> JSON {
        if let a = try await aggregates().first(where: { $0["name"]?.stringValue == name }) { return a }
        let r = try await call(.POST, "/os-aggregates", body: ["aggregate": ["name": .string(name)]], accept: [409])
        if r.status == 409 {
            if let a = try await aggregates().first(where: { $0["name"]?.stringValue == name }) { return a }
            throw .pending("aggregate \(name) exists but is not listed yet")
        }
        guard let a = r.body?["aggregate"] else { throw .pending("aggregate \(name) created without a body") }
        return a
    }

    func aggregateAction(_ id: Int64, _ body: JSON, accept: Set<Int>) async throws(OpenStackError) {
        _ = try await call(.POST, "/os-aggregates/\(id)/action", body: body, accept: accept)
    }

    func deleteAggregate(_ id: Int64) async throws(OpenStackError) {
        _ = try await call(.DELETE, "/os-aggregates/\(id)", accept: [404])
    }

    // MARK: Flavors

    func flavor(_ id: String) async throws(OpenStackError) -> JSON? {
        let r = try await call(.GET, "/flavors/\(NovaClient.pathSegment(id))", accept: [404])
        return r.status == 404 ? nil : r.body?["flavor"]
    }

    // MARK: Hypervisors

    /// Compute nodes whose hostname contains `pattern` (2.53+), with their sizes (still in the
    /// body at 2.79; gone from 2.88).
    func hypervisors(matching pattern: String) async throws(OpenStackError) -> [JSON] {
        let r = try await call(
            .GET, "/os-hypervisors/detail?" + NovaClient.query([("hypervisor_hostname_pattern", pattern)]),
            accept: [404])
        return r.status == 404 ? [] : r.body?["hypervisors"]?.arrayValue ?? []
    }

    // MARK: Servers

    func servers(_ filters: [(String, String)]) async throws(OpenStackError) -> [JSON] {
        try await call(.GET, "/servers/detail?" + NovaClient.query([("all_tenants", "1")] + filters)).body?["servers"]?
            .arrayValue ?? []
    }

    /// Nil once the server is gone.
    func server(_ id: String) async throws(OpenStackError) -> JSON? {
        let r = try await call(.GET, "/servers/\(id)", accept: [404])
        return r.status == 404 ? nil : r.body?["server"]
    }

    func deleteServer(_ id: String) async throws(OpenStackError) {
        _ = try await call(.DELETE, "/servers/\(id)", accept: [404])
    }
}
