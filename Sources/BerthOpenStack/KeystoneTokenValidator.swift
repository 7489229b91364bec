import BerthJSON
import Foundation
import Logging
import Synchronization

/// Who a Keystone token belongs to, as Keystone said when it validated it.
public struct ValidatedToken: Sendable, Equatable {
    public var userID: String
    public var userName: String?
    public var projectID: String
    public var projectName: String?
    public var roles: Set<String>
    public var expiresAt: Date

    public init(
        userID: String, userName: String?, projectID: String, projectName: String?, roles: Set<String>,
        expiresAt: Date
    ) {
        self.userID = userID
        self.userName = userName
        self.projectID = projectID
        self.projectName = projectName
        self.roles = roles
        self.expiresAt = expiresAt
    }
}

/// Validates users' tokens as keystonemiddleware's `auth_token` does: `GET /v3/auth/tokens` with
/// the token as `X-Subject-Token`, authenticated with Berth's own service credentials
/// (clouds.yaml). Answers are cached for at most `cacheSeconds` and never past the token's own
/// expiry, so a busy portal costs Keystone one validation per token per cache period. A token
/// Keystone does not accept (unknown, expired, revoked, unscoped) is nil, and is not cached: it
/// is asked again, so a token that becomes valid is never refused from memory.
public final class KeystoneTokenValidator: Sendable {
    struct Cached {
        var token: ValidatedToken
        var until: Date
    }

    private struct State {
        var connection: (keystone: KeystoneSession, http: OpenStackHTTP, cloud: CloudConfig)?
        var cache: [String: Cached] = [:]
        /// nil while Keystone answers; what went wrong when it did not.
        var problem: String?
    }

    let cloudName: String?
    let cloudsFile: String?
    let cacheSeconds: TimeInterval
    let maxEntries: Int
    let requestTimeout: Int64
    private let environment: [String: String]
    private let state = Mutex(State())
    let logger: Logger

    public init(
        cloud: String?, cloudsFile: String?, cacheSeconds: Int64 = 300, maxEntries: Int = 10_000,
        requestTimeout: Int64 = 10, environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger
    ) {
        self.cloudName = cloud
        self.cloudsFile = cloudsFile
        self.cacheSeconds = TimeInterval(cacheSeconds)
        self.maxEntries = maxEntries
        self.requestTimeout = requestTimeout
        self.environment = environment
        self.logger = logger
    }

    /// What is wrong with reaching Keystone, nil while it answers (`system.health`).
    public var problem: String? { state.withLock { $0.problem } }

    /// Reads clouds.yaml now, so that a wrong configuration stops berthd at start.
    public func checkConfiguration() throws(OpenStackError) {
        _ = try connection()
    }

    public func shutdown() async {
        let c = state.withLock { s -> OpenStackHTTP? in
            defer { s.connection = nil }
            return s.connection?.http
        }
        await c?.shutdown()
    }

    /// The token's owner, nil when Keystone does not accept the token. Throws when Keystone
    /// cannot be asked (unreachable, or it refuses Berth's own credentials).
    public func validate(_ token: String) async throws(OpenStackError) -> ValidatedToken? {
        let now = Date()
        if let hit = state.withLock({ $0.cache[token] }), hit.until > now { return hit.token }
        let c = try connection()
        let url = c.cloud.authURL + "/auth/tokens?nocatalog"
        var attempt = 0
        while true {
            attempt += 1
            let service: KeystoneToken
            let r: HTTPResult
            do throws(OpenStackError) {
                service = try await c.keystone.current()
                r = try await c.http.send(
                    .GET, url, headers: [("X-Auth-Token", service.id), ("X-Subject-Token", token)], body: nil)
            } catch {
                noteProblem("Keystone at \(c.cloud.authURL): \(error.description)")
                throw error
            }
            if r.status == 401 && attempt == 1 {
                // Our own token was revoked or expired early: authenticate again, once.
                await c.keystone.invalidate(service.id)
                continue
            }
            if r.status == 404 {
                noteProblem(nil)
                return nil
            }
            guard r.status == 200 else {
                let e = OpenStackHTTP.failure(r, method: .GET, url: url)
                noteProblem("Keystone at \(c.cloud.authURL) could not validate tokens: \(e.description)")
                throw e
            }
            noteProblem(nil)
            guard let v = KeystoneTokenValidator.parse(r.body?["token"]) else { return nil }
            let until = min(now.addingTimeInterval(cacheSeconds), v.expiresAt)
            if until > now {
                state.withLock { s in
                    if s.cache.count >= maxEntries {
                        s.cache = s.cache.filter { $0.value.until > now }
                        if s.cache.count >= maxEntries { s.cache.removeAll(keepingCapacity: true) }
                    }
                    s.cache[token] = Cached(token: v, until: until)
                }
            }
            return v.expiresAt > now ? v : nil
        }
    }

    /// A project-scoped token body; nil for anything else (Blazar's API needs a project).
    static func parse(_ body: JSON?) -> ValidatedToken? {
        guard let body, let user = body["user"], let userID = user["id"]?.stringValue,
            let project = body["project"], let projectID = project["id"]?.stringValue,
            let expires = body["expires_at"]?.stringValue.flatMap(KeystoneSession.parseDate)
        else { return nil }
        let roles = Set((body["roles"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue?.lowercased() })
        return ValidatedToken(
            userID: userID, userName: user["name"]?.stringValue, projectID: projectID,
            projectName: project["name"]?.stringValue, roles: roles, expiresAt: expires)
    }

    private func connection() throws(OpenStackError) -> (
        keystone: KeystoneSession, http: OpenStackHTTP, cloud: CloudConfig
    ) {
        // Made under the lock (it only reads clouds.yaml), so two first requests share one client.
        try state.withLock { s throws(OpenStackError) in
            if let existing = s.connection { return existing }
            let cloud = try CloudConfig.load(cloud: cloudName, file: cloudsFile, environment: environment)
            let http = try OpenStackHTTP(cloud: cloud, requestTimeout: .seconds(requestTimeout))
            let c = (keystone: KeystoneSession(cloud: cloud, http: http), http: http, cloud: cloud)
            s.connection = c
            return c
        }
    }

    private func noteProblem(_ problem: String?) {
        let changed = state.withLock { s -> Bool in
            guard s.problem != problem else { return false }
            s.problem = problem
            return true
        }
        guard changed else { return }
        if let problem {
            logger.error("keystone unreachable for token validation", metadata: ["problem": "\(problem)"])
        } else {
            logger.notice("keystone validating tokens")
        }
    }
}
