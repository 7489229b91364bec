import BerthContract
import BerthRPC

#if canImport(Glibc)
    import Glibc
#endif

/// Which users and groups hold which role (config `roles`), resolved to numeric ids at load.
public struct RoleMap: Sendable {
    public var users: [UInt32: Role] = [:]
    public var groups: [UInt32: Role] = [:]

    public init(users: [UInt32: Role] = [:], groups: [UInt32: Role] = [:]) {
        self.users = users
        self.groups = groups
    }

    /// Root is always admin; then the user's own mapping; then any of its groups (primary or
    /// supplementary), the most powerful role winning.
    public func role(for peer: PeerCredentials) -> Role? {
        if peer.uid == 0 { return .admin }
        if let r = users[peer.uid] { return r }
        var gids: Set<UInt32> = [peer.gid]
        gids.formUnion(RoleMap.supplementaryGroups(uid: peer.uid, gid: peer.gid))
        let roles = gids.compactMap { groups[$0] }
        for r in [Role.admin, .portal, .hook] where roles.contains(r) { return r }
        return nil
    }

    static func supplementaryGroups(uid: UInt32, gid: UInt32) -> [UInt32] {
        guard let pw = getpwuid(uid), let name = pw.pointee.pw_name else { return [] }
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, gid, &list, &count) == -1 {
            list = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(name, gid, &list, &count) != -1 else { return [] }
        }
        return Array(list.prefix(Int(count)))
    }

    /// Resolves a user given by name or number.
    public static func userID(_ s: String) -> UInt32? {
        if let n = UInt32(s) { return n }
        guard let pw = getpwnam(s) else { return nil }
        return pw.pointee.pw_uid
    }

    public static func groupID(_ s: String) -> UInt32? {
        if let n = UInt32(s) { return n }
        guard let gr = getgrnam(s) else { return nil }
        return gr.pointee.gr_gid
    }
}
