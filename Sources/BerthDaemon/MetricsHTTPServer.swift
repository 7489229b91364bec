import BerthCore
import BerthJSON
import BerthService
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// `metrics.listen`: "host:port" or "[v6]:port". Loopback only unless explicitly allowed: the
/// metrics and the calendar page carry project and lease names and have no authentication.
struct MetricsAddress: Sendable, Equatable {
    var host: String
    var port: Int

    static func parse(_ text: String, allowNonLoopback: Bool) throws(BerthError) -> MetricsAddress {
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
        let loopback: Bool
        if inet_pton(AF_INET, h, &v4) == 1 {
            loopback = h.hasPrefix("127.")
        } else if inet_pton(AF_INET6, h, &v6) == 1 {
            loopback = h == "::1" || h == "0:0:0:0:0:0:0:1"
        } else {
            throw BerthError(.invalidParams, "\"\(h)\" is not an IP address (use e.g. 127.0.0.1:9464)")
        }
        if !loopback && !allowNonLoopback {
            throw BerthError(
                .invalidParams,
                "\(h) is not a loopback address; metrics and the calendar page are unauthenticated, so berthd serves them on loopback only (127.0.0.1 or ::1) unless metrics.allow_non_loopback is true"
            )
        }
        return MetricsAddress(host: h, port: port)
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A small HTTP/1.1 server for `GET /metrics` (Prometheus text) and `GET /calendar` (the
/// read-only Gantt page). One request per connection (`Connection: close`): scrapers and
/// browsers reconnect cheaply, and nothing lingers to hold up a graceful stop.
struct MetricsHTTPServer: Service {
    typealias Conn = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    let channel: NIOAsyncChannel<Conn, Never>
    let exporter: MetricsExporter
    let scheduler: Scheduler
    let models: GPUModelTable
    let logger: Logger

    /// The bound address (port 0 in the config picks a free port).
    var boundPort: Int { channel.channel.localAddress?.port ?? 0 }

    static func bind(
        _ address: MetricsAddress, exporter: MetricsExporter, scheduler: Scheduler, models: GPUModelTable,
        logger: Logger
    ) async throws -> MetricsHTTPServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: address.host, port: address.port) { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try Conn(wrappingChannelSynchronously: child)
                }
            }
        return MetricsHTTPServer(
            channel: channel, exporter: exporter, scheduler: scheduler, models: models, logger: logger)
    }

    func run() async throws {
        do {
            try await serveUntilShutdown()
        } catch is CancellationError {
            // Graceful stop: the listener was cancelled and closed.
        }
    }

    func serveUntilShutdown() async throws {
        try await cancelWhenGracefulShutdown {
            try await channel.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await conn in inbound {
                        group.addTask {
                            do {
                                try await serve(conn)
                            } catch {
                                logger.debug("metrics connection failed", metadata: ["error": "\(error)"])
                            }
                        }
                    }
                }
            }
        }
    }

    func serve(_ conn: Conn) async throws {
        try await conn.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead? = nil
            for try await part in inbound {
                switch part {
                case .head(let h): head = h
                case .body: continue
                case .end:
                    guard let h = head else { return }
                    let (status, type, body) = await respond(h)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: type)
                    headers.add(name: "Content-Length", value: String(body.count))
                    headers.add(name: "Connection", value: "close")
                    headers.add(name: "Cache-Control", value: "no-store")
                    if type.hasPrefix("text/html") {
                        // The page is self-contained: nothing external may load, no script may run.
                        headers.add(
                            name: "Content-Security-Policy",
                            value: "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'")
                    }
                    try await outbound.write(
                        .head(HTTPResponseHead(version: h.version, status: status, headers: headers)))
                    if h.method != .HEAD {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                    }
                    try await outbound.write(.end(nil))
                    return
                }
            }
        }
    }

    func respond(_ h: HTTPRequestHead) async -> (HTTPResponseStatus, String, [UInt8]) {
        guard h.method == .GET || h.method == .HEAD else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", Array("only GET and HEAD\n".utf8))
        }
        let (path, query) = MetricsHTTPServer.splitURI(h.uri)
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", await exporter.scrape())
        case "/calendar":
            do throws(BerthError) {
                let html = try await calendarPage(query)
                return (.ok, "text/html; charset=utf-8", Array(html.utf8))
            } catch {
                let status: HTTPResponseStatus =
                    error.code == .invalidParams || error.code == .notFound ? .badRequest : .internalServerError
                var text = error.message
                for f in error.fieldErrors { text += "\n\(f.path): \(f.message)" }
                return (status, "text/plain; charset=utf-8", Array((text + "\n").utf8))
            }
        case "/":
            let body =
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>berthd</title></head><body>"
                + "<p><a href=\"/metrics\">/metrics</a> (Prometheus) · <a href=\"/calendar\">/calendar</a> (next 7 days)</p></body></html>"
            return (.ok, "text/html; charset=utf-8", Array(body.utf8))
        default:
            return (.notFound, "text/plain; charset=utf-8", Array("not found: try /metrics or /calendar\n".utf8))
        }
    }

    /// `from`/`to` as `calendar.get` takes them (RFC 3339 or "now"), default now to now + 7 days;
    /// `hosts` a comma-separated list.
    func calendarPage(_ query: [String: String]) async throws(BerthError) -> String {
        let now = scheduler.clock.now()
        var params: [String: JSON] = [:]
        for key in query.keys where !["from", "to", "hosts"].contains(key) {
            throw BerthError.invalidParam(key, "unknown parameter (from, to, hosts)")
        }
        let from = query["from"].flatMap { $0 == "now" ? now : Timestamp(rfc3339: $0) }
        if query["from"] != nil && from == nil {
            throw BerthError.invalidParam("from", "expected an RFC 3339 time or now")
        }
        let start = from ?? now
        let to = query["to"].flatMap { $0 == "now" ? now : Timestamp(rfc3339: $0) }
        if query["to"] != nil && to == nil { throw BerthError.invalidParam("to", "expected an RFC 3339 time or now") }
        params["from"] = .string(start.rfc3339)
        params["to"] = .string((to ?? start + 7 * 86_400).rfc3339)
        if let hosts = query["hosts"], !hosts.isEmpty {
            params["hosts"] = .array(hosts.split(separator: ",").map { .string(String($0)) })
        }
        let cal = try await scheduler.call(.calendarGet, .object(params))
        let hostList = try await scheduler.call(.hostList, nil)
        return CalendarPage.render(calendar: cal, hosts: hostList["items"]?.arrayValue ?? [], models: models, now: now)
    }

    static func splitURI(_ uri: String) -> (String, [String: String]) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var out: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            out[percentDecode(kv[0])] = kv.count > 1 ? percentDecode(kv[1]) : ""
        }
        return (String(uri[..<q]), out)
    }

    static func percentDecode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%"), it.count >= 2,
                let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
