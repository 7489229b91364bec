import AsyncHTTPClient
import BerthCore
import BerthJSON
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Why talking to the cloud failed; `retryAfterSeconds` carries a server's `Retry-After`.
public enum OpenStackError: Error, Sendable, Equatable, CustomStringConvertible, RetryAfterHinting {
    /// clouds.yaml or Berth's `openstack` settings are wrong: nothing works until they are fixed.
    case config(String)
    /// Keystone refused the credentials (or the token could not be scoped).
    case auth(String)
    /// The service could not be reached (refused, DNS, TLS, timeout).
    case unreachable(String)
    /// The service answered with an error status.
    case http(status: Int, method: String, url: String, message: String, retryAfter: Int64?)
    /// A step is waiting on the cloud (e.g. servers still deleting); try again later.
    case pending(String)

    public var description: String {
        switch self {
        case .config(let m): return "configuration: \(m)"
        case .auth(let m): return "authentication: \(m)"
        case .unreachable(let m): return "unreachable: \(m)"
        case .http(let status, let method, let url, let message, let retryAfter):
            return "\(method) \(url): HTTP \(status)\(message.isEmpty ? "" : ": \(message)")"
                + (retryAfter.map { " (retry after \($0) s)" } ?? "")
        case .pending(let m): return "waiting: \(m)"
        }
    }

    public var retryAfterSeconds: Int64? {
        if case .http(_, _, _, _, let r) = self { return r }
        return nil
    }

    /// Invalid input, wrong method or media type: the same request will never succeed.
    public var isPermanent: Bool {
        if case .http(let s, _, _, _, _) = self { return [400, 405, 406, 413, 415, 422].contains(s) }
        return false
    }

    public var status: Int? {
        if case .http(let s, _, _, _, _) = self { return s }
        return nil
    }
}

/// One HTTP exchange's result.
struct HTTPResult: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: JSON?
    var text: String
}

/// AsyncHTTPClient with TLS verification on (unless the cloud says `verify: false`), a CA bundle
/// when given, and connect/read timeouts.
final class OpenStackHTTP: Sendable {
    let client: HTTPClient
    let requestTimeout: TimeAmount

    init(cloud: CloudConfig, requestTimeout: TimeAmount = .seconds(30)) throws(OpenStackError) {
        var tls = TLSConfiguration.makeClientConfiguration()
        if !cloud.verify { tls.certificateVerification = .none }
        if let ca = cloud.cacert {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            } catch {
                throw .config("\(cloud.source): cacert \(ca) is not a PEM certificate bundle: \(error)")
            }
        }
        var config = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: requestTimeout))
        config.connectionPool = .init(idleTimeout: .seconds(30))
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: config)
        self.requestTimeout = requestTimeout
    }

    func shutdown() async {
        try? await client.shutdown()
    }

    func send(_ method: HTTPMethod, _ url: String, headers: [(String, String)], body: JSON?)
        async throws(OpenStackError)
        -> HTTPResult
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "berthd")
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body.serialized()))
        }
        do {
            let response = try await client.execute(request, timeout: requestTimeout + .seconds(5))
            let bytes = try await response.body.collect(upTo: 32 << 20)
            let text = String(buffer: bytes)
            let json = text.isEmpty ? nil : try? JSONParser.parse(text)
            return HTTPResult(status: Int(response.status.code), headers: response.headers, body: json, text: text)
        } catch let e as HTTPClientError {
            throw .unreachable("\(method.rawValue) \(url): \(e)")
        } catch {
            throw .unreachable("\(method.rawValue) \(url): \(error)")
        }
    }

    /// An error status as a typed error, with the message from an OpenStack-shaped body
    /// (`{"itemNotFound": {"message": ...}}`, `{"error": {"message": ...}}`) and `Retry-After`.
    static func failure(_ r: HTTPResult, method: HTTPMethod, url: String) -> OpenStackError {
        var message = ""
        if case .object(let o)? = r.body {
            for (_, v) in o {
                if let m = v["message"]?.stringValue { message = m }
            }
            if message.isEmpty, let m = o["message"]?.stringValue { message = m }
        }
        if message.isEmpty { message = String(r.text.prefix(300)) }
        var retryAfter: Int64? = nil
        if let h = r.headers.first(name: "Retry-After") {
            if let s = Int64(h.trimmingCharacters(in: .whitespaces)) {
                retryAfter = max(0, s)
            } else if let date = httpDate(h) {
                retryAfter = max(0, Int64(date.timeIntervalSinceNow.rounded(.up)))
            }
        }
        return .http(status: r.status, method: method.rawValue, url: url, message: message, retryAfter: retryAfter)
    }

    /// RFC 7231 IMF-fixdate, the other form of `Retry-After`.
    static func httpDate(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: s)
    }
}
