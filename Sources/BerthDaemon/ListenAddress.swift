import BerthCore

#if canImport(Glibc)
    import Glibc
#endif

/// An HTTP listener's "host:port" or "[v6]:port" (`metrics.listen`, `blazar_api.listen`): an IP
/// address, never a name, so whether it is loopback is known before anything binds.
struct ListenAddress: Sendable, Equatable {
    var host: String
    var port: Int

    var isLoopback: Bool { host.hasPrefix("127.") || host == "::1" || host == "0:0:0:0:0:0:0:1" }

    /// Metrics and the calendar page carry project and lease names and have no authentication:
    /// loopback only unless explicitly allowed.
    static func parse(_ text: String, allowNonLoopback: Bool) throws(BerthError) -> ListenAddress {
        let a = try parse(text)
        if !a.isLoopback && !allowNonLoopback {
            throw BerthError(
                .invalidParams,
                "\(a.host) is not a loopback address; metrics and the calendar page are unauthenticated, so berthd serves them on loopback only (127.0.0.1 or ::1) unless metrics.allow_non_loopback is true"
            )
        }
        return a
    }

    static func parse(_ text: String) throws(BerthError) -> ListenAddress {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw BerthError(.invalidParams, "expected \"host:port\" or \"[ipv6]:port\", got \"\(text)\"")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                throw BerthError(.invalidParams, "expected \"host:port\" (e.g. 127.0.0.1:9464), got \"\(text)\"")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw BerthError(.invalidParams, "the port in \"\(text)\" must be a number from 0 to 65535")
        }
        if host == "localhost" { host = "127.0.0.1" }
        let h = String(host)
        var v4 = in_addr()
        var v6 = in6_addr()
        guard inet_pton(AF_INET, h, &v4) == 1 || inet_pton(AF_INET6, h, &v6) == 1 else {
            throw BerthError(.invalidParams, "\"\(h)\" is not an IP address (use e.g. 127.0.0.1:9464)")
        }
        return ListenAddress(host: h, port: port)
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
