import BerthTestSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Runs `body` with environment variables set (or unset, for nil) and restores the previous values.
///
/// The environment is process-wide: only call this from tests in the `.serialized` suite.
func withEnvironment<R>(_ values: [String: String?], _ body: () throws -> R) rethrows -> R {
    var saved: [(String, String?)] = []
    for (name, value) in values {
        saved.append((name, getenv(name).map { String(cString: $0) }))
        set(name, value)
    }
    defer { for (name, value) in saved { set(name, value) } }
    return try body()
}

private func set(_ name: String, _ value: String?) {
    if let value { setenv(name, value, 1) } else { unsetenv(name) }
}

func environment(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// A Unix datagram socket in a fresh temporary directory, standing in for systemd's notify socket.
///
/// `sd_notify` returns only after `sendmsg` has queued the datagram here, so tests read with
/// `MSG_DONTWAIT` and need no sleeps.
final class NotifySocket {
    let directory: String
    let path: String
    private let fd: Int32

    init() throws {
        directory = try TemporaryDirectory.make(prefix: "berth-sd")
        path = directory + "/notify.sock"

        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            rmdir(directory)
            throw SystemCallError(call: "socket", code: errno)
        }
        guard try UnixSocketAddress(path: path).bind(fd) == 0 else {
            let code = errno
            close(fd)
            rmdir(directory)
            throw SystemCallError(call: "bind", code: code)
        }
    }

    deinit {
        close(fd)
        unlink(path)
        rmdir(directory)
    }

    /// Every datagram queued so far, oldest first.
    func receiveAll() -> [String] {
        var datagrams: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count >= 0 else { return datagrams }
            datagrams.append(String(decoding: buffer[..<count], as: UTF8.self))
        }
    }
}
