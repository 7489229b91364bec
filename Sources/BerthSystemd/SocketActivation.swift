import CSystemd

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Listening sockets handed over by systemd socket activation (`berthd.socket`).
///
/// With socket activation systemd owns `/run/berth/berth.sock`: clients can connect while berthd
/// starts or restarts, and their connections queue in the kernel instead of failing.
public enum SocketActivation {
    /// The passed file descriptors (from `SD_LISTEN_FDS_START`, i.e. 3), or `[]` when the process
    /// was not socket-activated (`LISTEN_FDS` unset, or `LISTEN_PID` names another process).
    ///
    /// Calls `sd_listen_fds(1)`, which unsets `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` so
    /// child processes (hooks) do not think the sockets are theirs, and sets `FD_CLOEXEC` on the
    /// descriptors; a second call therefore returns `[]`. Only listening Unix stream sockets are
    /// returned, since that is all the RPC server can serve; anything else a misconfigured socket
    /// unit passes is left untouched and skipped, and the daemon falls back to binding its own socket.
    public static func listenFileDescriptors() -> [Int32] {
        let count = sd_listen_fds(1)
        guard count > 0 else { return [] }
        return (0..<count)
            .map { SD_LISTEN_FDS_START + $0 }
            .filter { sd_is_socket_unix($0, Int32(SOCK_STREAM.rawValue), 1, nil, 0) > 0 }
    }
}
