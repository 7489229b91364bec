import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Identity of the socket file this server created, so it removes its own file and not a successor's.
struct BoundSocket: Sendable {
    var path: String
    var device: UInt64
    var inode: UInt64
}

/// Filesystem side of binding by path.
enum SocketFile {
    /// Longest path `sockaddr_un.sun_path` holds, without its terminating NUL.
    static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// Checks the parent directory and clears a stale socket file, refusing to touch a live server's
    /// socket or anything that is not a socket.
    static func prepare(path: String) throws {
        guard !path.isEmpty else { throw RPCServerError("socket path is empty") }
        guard path.utf8.count <= maxPathLength else {
            throw RPCServerError(
                "socket path \(path) is \(path.utf8.count) bytes long; Unix sockets allow at most \(maxPathLength)"
            )
        }
        let parent: String
        if let slash = path.lastIndex(of: "/") {
            parent = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            parent = "."
        }
        var info = stat()
        if stat(parent, &info) != 0 {
            throw RPCServerError("cannot bind \(path): directory \(parent): \(errnoText())")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw RPCServerError("cannot bind \(path): \(parent) is not a directory")
        }

        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw RPCServerError("cannot bind \(path): \(errnoText())")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw RPCServerError("cannot bind \(path): the path exists and is not a socket")
        }
        switch probe(path: path) {
        case .listening:
            throw RPCServerError("cannot bind \(path): another server is already listening on it")
        case .stale:
            if unlink(path) != 0, errno != ENOENT {
                throw RPCServerError("cannot remove stale socket \(path): \(errnoText())")
            }
        case .unknown(let code):
            throw RPCServerError(
                "cannot bind \(path): cannot tell whether the existing socket is in use: \(errnoText(code))"
            )
        }
    }

    enum ProbeResult { case listening, stale, unknown(Int32) }

    /// Connects without blocking: refused means nobody is listening (a leftover of a crashed server).
    static func probe(path: String) -> ProbeResult {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(AF_UNIX, type, 0)
        guard fd >= 0 else { return .unknown(errno) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
        }
        let rc = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc == 0 { return .listening }
        switch errno {
        case ECONNREFUSED: return .stale
        case EAGAIN, EINPROGRESS: return .listening  // backlog full: someone is definitely there
        case let code: return .unknown(code)
        }
    }

    static func finishBinding(path: String, mode: UInt16) throws -> BoundSocket {
        guard chmod(path, mode_t(mode)) == 0 else {
            throw RPCServerError("cannot chmod \(path) to \(String(mode, radix: 8)): \(errnoText())")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw RPCServerError("cannot stat \(path) after binding: \(errnoText())")
        }
        return BoundSocket(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Removes the socket file if it is still the one this server bound.
    static func remove(_ socket: BoundSocket, logger: Logger) {
        var info = stat()
        guard lstat(socket.path, &info) == 0 else { return }
        guard UInt64(info.st_dev) == socket.device, UInt64(info.st_ino) == socket.inode else {
            logger.notice("socket file was replaced; leaving it", metadata: ["rpc.socket": "\(socket.path)"])
            return
        }
        if unlink(socket.path) != 0 {
            logger.warning(
                "cannot remove socket file",
                metadata: ["rpc.socket": "\(socket.path)", "error": "\(errnoText())"]
            )
        }
    }

    /// A socket-activated descriptor must be a listening stream socket.
    static func checkListening(fd: Int32) throws {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0 else {
            throw RPCServerError("descriptor \(fd) is not a usable socket: \(errnoText())")
        }
        guard value != 0 else { throw RPCServerError("socket descriptor \(fd) is not listening") }
        length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) == 0 else {
            throw RPCServerError("descriptor \(fd) is not a usable socket: \(errnoText())")
        }
        guard value == Int32(SOCK_STREAM.rawValue) else {
            throw RPCServerError("socket descriptor \(fd) is not a stream socket")
        }
    }
}
