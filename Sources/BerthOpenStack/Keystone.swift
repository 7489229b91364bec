import BerthJSON
import Foundation
import NIOHTTP1

/// A Keystone v3 token and the catalog that came with it.
struct KeystoneToken: Sendable {
    var id: String
    var expiresAt: Date
    var catalog: [JSON]
    var projectID: String?
}

/// Authenticates against Keystone v3 (password or application credential, project-scoped),
/// caches the token and renews it a margin before it expires, as keystoneauth does; a 401 from
/// a service drops it so the next call authenticates again.
actor KeystoneSession {
    let cloud: CloudConfig
    let http: OpenStackHTTP
    /// Renew this long before `expires_at` (keystoneauth's minimum token life is 120 s).
    let margin: TimeInterval
    private var token: KeystoneToken?

    init(cloud: CloudConfig, http: OpenStackHTTP, margin: TimeInterval = 120) {
        self.cloud = cloud
        self.http = http
        self.margin = margin
    }

    func current() async throws(OpenStackError) -> KeystoneToken {
        if let t = token, t.expiresAt.timeIntervalSinceNow > margin { return t }
        let fresh = try await authenticate()
        token = fresh
        return fresh
    }

    /// A service said 401: the token is revoked or expired early.
    func invalidate(_ id: String) {
        if token?.id == id { token = nil }
    }

    func authenticate() async throws(OpenStackError) -> KeystoneToken {
        let url = cloud.authURL + "/auth/tokens"
        let r = try await http.send(.POST, url, headers: [], body: KeystoneSession.authBody(cloud))
        guard r.status == 201 || r.status == 200 else {
            let e = OpenStackHTTP.failure(r, method: .POST, url: url)
            if r.status == 401 || r.status == 403 || r.status == 404 || r.status == 400 {
                throw .auth(
                    "Keystone at \(cloud.authURL) refused the \(cloud.authType == .password ? "password" : "application credential") of cloud '\(cloud.name)' (\(cloud.source)): HTTP \(r.status) \(e.description)"
                )
            }
            throw e
        }
        guard let id = r.headers.first(name: "X-Subject-Token"), !id.isEmpty else {
            throw .auth("Keystone at \(cloud.authURL) answered without an X-Subject-Token header")
        }
        let body = r.body?["token"]
        let expires =
            body?["expires_at"]?.stringValue.flatMap(KeystoneSession.parseDate) ?? Date().addingTimeInterval(3600)
        guard let catalog = body?["catalog"]?.arrayValue else {
            throw .auth("Keystone token for cloud '\(cloud.name)' has no catalog (is it project-scoped?)")
        }
        return KeystoneToken(
            id: id, expiresAt: expires, catalog: catalog, projectID: body?["project"]?["id"]?.stringValue)
    }

    static func authBody(_ c: CloudConfig) -> JSON {
        func domain(_ name: String?, _ id: String?) -> JSON? {
            if let id { return ["id": .string(id)] }
            if let name { return ["name": .string(name)] }
            return nil
        }
        var user: [String: JSON] = [:]
        if let id = c.userID { user["id"] = .string(id) } else if let n = c.username { user["name"] = .string(n) }
        if c.userID == nil, let d = domain(c.userDomainName, c.userDomainID) { user["domain"] = d }
        switch c.authType {
        case .password:
            user["password"] = .string(c.password ?? "")
            var project: [String: JSON] = [:]
            if let id = c.projectID {
                project["id"] = .string(id)
            } else {
                project["name"] = .string(c.projectName ?? "")
                if let d = domain(c.projectDomainName, c.projectDomainID) { project["domain"] = d }
            }
            return [
                "auth": [
                    "identity": ["methods": ["password"], "password": ["user": .object(user)]],
                    "scope": ["project": .object(project)],
                ]
            ]
        case .applicationCredential:
            var credential: [String: JSON] = ["secret": .string(c.applicationCredentialSecret ?? "")]
            if let id = c.applicationCredentialID {
                credential["id"] = .string(id)
            } else {
                credential["name"] = .string(c.applicationCredentialName ?? "")
                credential["user"] = .object(user)
            }
            // An application credential carries its own project scope.
            return [
                "auth": [
                    "identity": ["methods": ["application_credential"], "application_credential": .object(credential)]
                ]
            ]
        }
    }

    /// The endpoint of `type` for the cloud's interface and region.
    static func endpoint(type: String, interface: String, region: String?, catalog: [JSON]) -> String? {
        for service in catalog where service["type"]?.stringValue == type {
            for e in service["endpoints"]?.arrayValue ?? [] {
                guard e["interface"]?.stringValue == interface else { continue }
                if let region, e["region_id"]?.stringValue != region && e["region"]?.stringValue != region { continue }
                if var url = e["url"]?.stringValue {
                    while url.hasSuffix("/") { url.removeLast() }
                    return url
                }
            }
        }
        return nil
    }

    static func parseDate(_ s: String) -> Date? {
        // Keystone: 2030-01-01T10:00:00.000000Z
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        for format in ["yyyy-MM-dd'T'HH:mm:ss.SSSSSSX", "yyyy-MM-dd'T'HH:mm:ssX", "yyyy-MM-dd'T'HH:mm:ss.SSSX"] {
            f.dateFormat = format
            if let d = f.date(from: s) { return d }
        }
        return nil
    }
}
