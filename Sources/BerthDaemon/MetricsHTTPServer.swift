import BerthCore
import BerthJSON
import BerthService
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// `GET /metrics` (Prometheus text) and `GET /calendar` (the read-only Gantt page), served by
/// Hummingbird like the REST API. One responder for every path, so that a wrong method is a 405
/// and an unknown path a short hint rather than the router's empty 404.
struct MetricsHTTPServer: Sendable {
    let exporter: MetricsExporter
    let scheduler: Scheduler
    let models: GPUModelTable
    let logger: Logger

    /// The listener on `address`; it logs `metrics listening` with the bound port once it runs.
    func application(_ address: ListenAddress) -> some Service {
        let logger = self.logger
        return Application(
            responder: CallbackResponder<BasicRequestContext> { request, _ in await self.response(request) },
            server: .http1(configuration: .init(idleTimeout: .seconds(15))),
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "berthd"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? address.port
                logger.notice(
                    "metrics listening",
                    metadata: ["address": "\(ListenAddress(host: address.host, port: port).description)"])
            },
            logger: logger)
    }

    func response(_ request: Request) async -> Response {
        let (status, type, body) = await respond(
            method: request.method, path: request.uri.path,
            query: Dictionary(
                request.uri.queryParameters.map { (String($0.key), String($0.value)) }, uniquingKeysWith: { _, b in b })
        )
        var headers: HTTPFields = [.contentType: type, .cacheControl: "no-store", .connection: "close"]
        if type.hasPrefix("text/html") {
            // The page is self-contained: nothing external may load, no script may run.
            headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'"
        }
        if request.method == .head {
            headers[.contentLength] = String(body.count)
            return Response(status: status, headers: headers)
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    func respond(method: HTTPRequest.Method, path: String, query: [String: String]) async -> (
        HTTPResponse.Status, String, [UInt8]
    ) {
        guard method == .get || method == .head else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", Array("only GET and HEAD\n".utf8))
        }
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", await exporter.scrape())
        case "/calendar":
            do throws(BerthError) {
                let html = try await calendarPage(query)
                return (.ok, "text/html; charset=utf-8", Array(html.utf8))
            } catch {
                let status: HTTPResponse.Status =
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
}
