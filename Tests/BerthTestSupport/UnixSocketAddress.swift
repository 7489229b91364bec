#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A filesystem Unix-socket address as `bind` and `connect` take it.
public struct UnixSocketAddress {
    public let path: String
    private var address = sockaddr_un()

    /// Fails with ENAMETOOLONG when `path` does not fit `sun_path` with its NUL.
    public init(path: String) throws(SystemCallError) {
        self.path = path
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw SystemCallError(call: "sockaddr_un(\(path))", code: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    }

    /// `bind(2)` of `fd` to this address; the call's return value (errno is set on -1).
    public func bind(_ fd: Int32) -> Int32 {
        withSockaddr { posixBind(fd, $0, $1) }
    }

    /// `connect(2)` of `fd` to this address; the call's return value (errno is set on -1).
    public func connect(_ fd: Int32) -> Int32 {
        withSockaddr { posixConnect(fd, $0, $1) }
    }

    private func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// A socket path in /tmp that no other test (or test process) uses: the pid and a random number.
    public static func temporaryPath(prefix: String = "berth") -> String {
        "/tmp/\(prefix)-\(getpid())-\(UInt64.random(in: 0...UInt64.max) % 1_000_000_000).sock"
    }
}

// Outside the type, where the names mean the C functions rather than the methods above.
private func posixBind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    bind(fd, address, length)
}

private func posixConnect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    connect(fd, address, length)
}
