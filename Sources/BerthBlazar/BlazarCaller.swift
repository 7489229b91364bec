/// Who is calling the REST API, from their token: a user acting in one project with roles.
public struct BlazarCaller: Sendable, Equatable {
    public var userID: String
    public var projectID: String
    /// Lower-case role names (Keystone lists implied roles too: admin ⊃ member ⊃ reader).
    public var roles: Set<String>

    public init(userID: String, projectID: String, roles: Set<String>) {
        self.userID = userID
        self.projectID = projectID
        self.roles = roles
    }

    /// Blazar's default policy: `admin` may do everything, in any project.
    public var isAdmin: Bool { roles.contains("admin") }

    /// Reading a lease needs `reader` (or more) in its project.
    public func mayRead(project: String) -> Bool {
        isAdmin || project == projectID && !roles.isDisjoint(with: ["reader", "member", "manager"])
    }

    /// Creating, changing and deleting a lease needs `member` (or more) in its project.
    public func mayWrite(project: String) -> Bool {
        isAdmin || project == projectID && !roles.isDisjoint(with: ["member", "manager"])
    }
}

/// Turns an `X-Auth-Token` into a caller. Keystone validates real tokens; `noauth` trusts
/// `USER:PROJECT` (loopback only).
public protocol BlazarAuthenticator: Sendable {
    /// The caller, or a Blazar-shaped error: 401 for a missing or refused token, 503 when the
    /// identity service cannot be asked.
    func authenticate(token: String?) async throws(BlazarError) -> BlazarCaller
}

/// Nova's `noauth2` convention: the token is `USER:PROJECT`; `admin` as USER is an admin,
/// anyone else a member and reader of PROJECT.
public struct NoAuthAuthenticator: BlazarAuthenticator {
    public init() {}

    public func authenticate(token: String?) async throws(BlazarError) -> BlazarCaller {
        guard let token, !token.isEmpty else { throw BlazarError.unauthorized }
        let parts = token.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let user = String(parts[0])
        let project = parts.count > 1 && !parts[1].isEmpty ? String(parts[1]) : user
        guard !user.isEmpty else { throw BlazarError.unauthorized }
        let roles: Set<String> = user == "admin" ? ["admin", "member", "reader"] : ["member", "reader"]
        return BlazarCaller(userID: user, projectID: project, roles: roles)
    }
}

extension BlazarError {
    /// keystonemiddleware's answer to a missing or invalid token.
    public static let unauthorized = BlazarError(401, "The request you have made requires authentication.")
}
