import BerthJSON
import Foundation
import Yams

/// A cloud's connection settings, read the way openstacksdk reads them: `clouds.yaml` from
/// `OS_CLIENT_CONFIG_FILE` or the standard search path, a `secure.yaml` beside it merged over it,
/// and the cloud chosen by name (Berth's config, else `OS_CLOUD`).
public struct CloudConfig: Sendable, Equatable {
    public enum AuthType: String, Sendable, Equatable {
        case password
        case applicationCredential = "v3applicationcredential"
    }

    public var name: String
    /// The file it came from (for messages).
    public var source: String
    public var authType: AuthType
    public var authURL: String
    public var username: String?
    public var userID: String?
    public var password: String?
    public var userDomainName: String?
    public var userDomainID: String?
    public var projectName: String?
    public var projectID: String?
    public var projectDomainName: String?
    public var projectDomainID: String?
    public var applicationCredentialID: String?
    public var applicationCredentialName: String?
    public var applicationCredentialSecret: String?
    public var regionName: String?
    /// Endpoint interface in the catalog: public, internal or admin.
    public var interface: String
    /// CA bundle to trust (PEM file), instead of the system's.
    public var cacert: String?
    /// TLS certificate verification; only an explicit `verify: false` turns it off.
    public var verify: Bool

    /// The files openstacksdk looks at, in order (the first that exists wins).
    public static func searchPath(environment env: [String: String], name: String = "clouds.yaml") -> [String] {
        var out: [String] = []
        let envKey = name == "clouds.yaml" ? "OS_CLIENT_CONFIG_FILE" : "OS_CLIENT_SECURE_FILE"
        if let f = env[envKey], !f.isEmpty { out.append(f) }
        out.append(FileManager.default.currentDirectoryPath + "/" + name)
        if let home = env["HOME"], !home.isEmpty {
            out.append(
                (env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? home + "/.config") + "/openstack/" + name)
        }
        out.append("/etc/openstack/" + name)
        return out
    }

    /// Loads cloud `cloud` (or `OS_CLOUD`) from `file` (or the search path). Every error names
    /// the file and the key at fault.
    public static func load(cloud: String?, file: String?, environment env: [String: String]) throws(OpenStackError)
        -> CloudConfig
    {
        let candidates = file.map { [$0] } ?? searchPath(environment: env)
        guard let path = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) else {
            throw .config(
                file != nil
                    ? "clouds.yaml \(file!) does not exist or is not readable"
                    : "no clouds.yaml found (looked in \(candidates.joined(separator: ", ")))")
        }
        let document = try readYAML(path)
        guard let clouds = document["clouds"]?.objectValue else {
            throw .config("\(path): no top-level `clouds:` mapping")
        }
        guard
            let chosen = cloud ?? env["OS_CLOUD"].flatMap({ $0.isEmpty ? nil : $0 })
                ?? (clouds.count == 1 ? clouds.keys.first : nil)
        else {
            throw .config(
                "\(path): several clouds (\(clouds.keys.sorted().joined(separator: ", "))) and none chosen; set openstack.cloud in berthd's config or OS_CLOUD"
            )
        }
        guard var entry = clouds[chosen] else {
            throw .config("\(path): no cloud named '\(chosen)' (have: \(clouds.keys.sorted().joined(separator: ", ")))")
        }
        // secure.yaml beside it (or from OS_CLIENT_SECURE_FILE / the search path) overlays secrets.
        let dir = (path as NSString).deletingLastPathComponent
        var secureCandidates = [dir + "/secure.yaml"]
        if let s = env["OS_CLIENT_SECURE_FILE"], !s.isEmpty { secureCandidates.insert(s, at: 0) }
        if let securePath = secureCandidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) {
            if let overlay = try readYAML(securePath)["clouds"]?[chosen] {
                entry = merge(entry, overlay)
            }
        }
        return try parse(entry, name: chosen, source: path)
    }

    static func readYAML(_ path: String) throws(OpenStackError) -> JSON {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .config("cannot read \(path): \(error.localizedDescription)")
        }
        let any: Any?
        do {
            any = try Yams.load(yaml: text)
        } catch {
            throw .config("\(path) is not valid YAML: \(error)")
        }
        guard let any, case .object = JSON(yaml: any) else {
            throw .config("\(path): expected a YAML mapping at the top")
        }
        return JSON(yaml: any)
    }

    /// `overlay` over `base`, mappings merged key by key.
    static func merge(_ base: JSON, _ overlay: JSON) -> JSON {
        guard case .object(var b) = base, case .object(let o) = overlay else { return overlay }
        for (k, v) in o { b[k] = b[k].map { merge($0, v) } ?? v }
        return .object(b)
    }

    static func parse(_ entry: JSON, name: String, source: String) throws(OpenStackError) -> CloudConfig {
        let where_ = "\(source): clouds.\(name)"
        guard let auth = entry["auth"]?.objectValue else { throw .config("\(where_).auth is missing") }
        func s(_ k: String) -> String? {
            switch auth[k] {
            case .string(let v)?: return v.isEmpty ? nil : v
            case .int(let v)?: return String(v)
            default: return nil
            }
        }
        let typeText =
            entry["auth_type"]?.stringValue
            ?? (s("application_credential_secret") != nil ? "v3applicationcredential" : "password")
        guard let type = AuthType(rawValue: typeText) else {
            throw .config("\(where_).auth_type '\(typeText)' is not supported (password or v3applicationcredential)")
        }
        guard var url = s("auth_url") else { throw .config("\(where_).auth.auth_url is missing") }
        while url.hasSuffix("/") { url.removeLast() }
        if !url.hasSuffix("/v3") { url += "/v3" }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw .config("\(where_).auth.auth_url '\(url)' is not an http(s) URL")
        }
        var c = CloudConfig(
            name: name, source: source, authType: type, authURL: url, username: s("username"), userID: s("user_id"),
            password: s("password"), userDomainName: s("user_domain_name"), userDomainID: s("user_domain_id"),
            projectName: s("project_name") ?? s("tenant_name"), projectID: s("project_id") ?? s("tenant_id"),
            projectDomainName: s("project_domain_name"), projectDomainID: s("project_domain_id"),
            applicationCredentialID: s("application_credential_id"),
            applicationCredentialName: s("application_credential_name"),
            applicationCredentialSecret: s("application_credential_secret"),
            regionName: entry["region_name"]?.stringValue, interface: "public", cacert: entry["cacert"]?.stringValue,
            verify: true)
        if let d = s("domain_name") {
            c.userDomainName = c.userDomainName ?? d
            c.projectDomainName = c.projectDomainName ?? d
        }
        if let i = entry["interface"]?.stringValue ?? entry["endpoint_type"]?.stringValue {
            let normal = i.replacingOccurrences(of: "URL", with: "").lowercased()
            guard ["public", "internal", "admin"].contains(normal) else {
                throw .config("\(where_).interface '\(i)' must be public, internal or admin")
            }
            c.interface = normal
        }
        if case .bool(false)? = entry["verify"] { c.verify = false }
        switch type {
        case .password:
            guard c.username != nil || c.userID != nil else {
                throw .config("\(where_).auth needs username or user_id")
            }
            guard c.password != nil else {
                throw .config("\(where_).auth.password is missing (in clouds.yaml or secure.yaml)")
            }
            guard c.projectName != nil || c.projectID != nil else {
                throw .config("\(where_).auth needs project_name or project_id (Berth needs a project-scoped token)")
            }
            if c.userID == nil && c.userDomainName == nil && c.userDomainID == nil { c.userDomainName = "Default" }
            if c.projectID == nil && c.projectDomainName == nil && c.projectDomainID == nil {
                c.projectDomainName = "Default"
            }
        case .applicationCredential:
            guard c.applicationCredentialSecret != nil else {
                throw .config("\(where_).auth.application_credential_secret is missing (in clouds.yaml or secure.yaml)")
            }
            guard
                c.applicationCredentialID != nil
                    || (c.applicationCredentialName != nil && (c.username != nil || c.userID != nil))
            else {
                throw .config(
                    "\(where_).auth needs application_credential_id (or application_credential_name with username)")
            }
            if c.userID == nil && c.username != nil && c.userDomainName == nil && c.userDomainID == nil {
                c.userDomainName = "Default"
            }
        }
        if let ca = c.cacert, !FileManager.default.isReadableFile(atPath: ca) {
            throw .config("\(where_).cacert \(ca) does not exist or is not readable")
        }
        return c
    }
}

extension JSON {
    /// From what Yams returns (mappings, sequences, scalars).
    init(yaml any: Any) {
        switch any {
        case let d as [String: Any]: self = .object(d.mapValues(JSON.init(yaml:)))
        case let d as [AnyHashable: Any]:
            self = .object(Dictionary(d.map { ("\($0.key)", JSON(yaml: $0.value)) }, uniquingKeysWith: { $1 }))
        case let a as [Any]: self = .array(a.map(JSON.init(yaml:)))
        case let b as Bool: self = .bool(b)
        case let i as Int: self = .int(Int64(i))
        case let d as Double: self = .double(d)
        case let s as String: self = .string(s)
        default: self = .null
        }
    }
}
