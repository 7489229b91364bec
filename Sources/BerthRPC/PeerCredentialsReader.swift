import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Reads the kernel's record of who connected a Unix socket.
public enum PeerCredentialsReader {
    /// Linux `struct ucred` (pid_t, uid_t, gid_t). Glibc only declares it under `_GNU_SOURCE`, which the
    /// Swift overlay does not set, so it is mirrored here with the same layout.
    struct UCred: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// `SO_PEERCRED` of a connected socket, by file descriptor.
    public static func read(fileDescriptor fd: Int32) throws(Failure) -> PeerCredentials {
        #if os(Linux)
            var cred = UCred()
            var length = socklen_t(MemoryLayout<UCred>.size)
            let rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length)
            guard rc == 0 else {
                throw Failure(description: "getsockopt(SO_PEERCRED) failed: \(String(cString: strerror(errno)))")
            }
            guard length == socklen_t(MemoryLayout<UCred>.size) else {
                throw Failure(description: "getsockopt(SO_PEERCRED) returned \(length) bytes")
            }
            return PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
        #else
            throw Failure(description: "SO_PEERCRED is only supported on Linux")
        #endif
    }

    /// `SO_PEERCRED` of a connected NIO socket channel. Must be called on the channel's event loop for
    /// the future to be already complete (as in a child channel initializer); works from anywhere.
    public static func read(channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        #if os(Linux)
            guard let provider = channel as? any SocketOptionProvider else {
                return channel.eventLoop.makeFailedFuture(
                    Failure(description: "channel \(type(of: channel)) has no socket options")
                )
            }
            let future: EventLoopFuture<UCred> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET),
                name: SocketOptionName(SO_PEERCRED)
            )
            return future.map { PeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
        #else
            return channel.eventLoop.makeFailedFuture(Failure(description: "SO_PEERCRED is only supported on Linux"))
        #endif
    }
}
