import BerthContract
import BerthCore
import BerthJSON
import BerthRPC
import BerthService
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// OpenStack Blazar's v1 REST API over Berth's scheduler: each request is authenticated
/// (Keystone or `noauth`), checked against Blazar's default policy, translated into contract
/// calls (through the same method table, actor and group commit as the socket's callers), and
/// answered in Blazar's formats. Nothing here holds state of its own but the token cache of the
/// authenticator.
public struct BlazarAPI: Sendable {
    let methods: BerthMethods
    let auth: any BlazarAuthenticator
    let catalog: any CloudCatalog
    let maxBodyBytes: Int
    let logger: Logger

    public init(
        methods: BerthMethods, auth: any BlazarAuthenticator, catalog: any CloudCatalog, maxBodyBytes: Int = 1 << 20,
        logger: Logger
    ) {
        self.methods = methods
        self.auth = auth
        self.catalog = catalog
        self.maxBodyBytes = maxBodyBytes
        self.logger = logger
    }

    /// Adds Blazar's routes (and `/healthcheck`) to `router`.
    public func addRoutes(to router: Router<BasicRequestContext>) {
        router.add(middleware: BlazarErrorMiddleware())
        router.get("/") { request, _ in versions(request) }
        router.get("/versions") { request, _ in versions(request) }
        router.get("/healthcheck") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "OK")))
        }
        addLeaseRoutes(to: router)
        addHostRoutes(to: router)
        let floating: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            await respond(request) { _ throws(BlazarError) in
                throw BlazarError(501, "Floating IP reservations are not supported by Berth (no Neutron integration)")
            }
        }
        router.get("/v1/floatingips", use: floating)
        router.post("/v1/floatingips", use: floating)
        router.get("/v1/floatingips/{id}", use: floating)
        router.put("/v1/floatingips/{id}", use: floating)
        router.delete("/v1/floatingips/{id}", use: floating)
    }

    /// `GET /` and `/versions`: 300 with the one version, v1.0, linked from the host asked for.
    func versions(_ request: Request) -> Response {
        let host = request.head.authority ?? "localhost"
        let scheme = request.head.scheme ?? "http"
        let body: JSON = [
            "versions": [
                [
                    "id": "v1.0", "status": "CURRENT", "min_version": "1.0", "max_version": "1.0",
                    "links": [["href": .string("\(scheme)://\(host)/v1"), "rel": "self"]],
                ]
            ]
        ]
        return BlazarAPI.json(body, status: .init(code: 300))
    }

    // MARK: - Request plumbing

    /// Authenticates, runs `body` and turns its result (or error) into a response.
    func respond(
        _ request: Request, status: HTTPResponse.Status = .ok,
        _ body: (BlazarCaller) async throws(BlazarError) -> JSON?
    ) async -> Response {
        do throws(BlazarError) {
            let caller = try await auth.authenticate(token: request.headers[BlazarAPI.authTokenHeader])
            guard let result = try await body(caller) else { return Response(status: .noContent) }
            return BlazarAPI.json(result, status: status)
        } catch {
            if error.status >= 500 && error.status != 501 {
                logger.warning(
                    "blazar api request failed",
                    metadata: [
                        "http.method": "\(request.method.rawValue)", "http.path": "\(request.uri.path)",
                        "http.status": "\(error.status)", "error": "\(error.message)",
                    ])
            }
            return BlazarAPI.error(error)
        }
    }

    /// The request's JSON body (an empty body is `{}`, as in Blazar), at most `maxBodyBytes`.
    func body(_ request: Request) async throws(BlazarError) -> JSON {
        if let type = request.headers[.contentType], !type.lowercased().hasPrefix("application/json") {
            throw BlazarError(400, "Content type '\(type)' isn't supported")
        }
        let buffer: ByteBuffer
        do {
            var copy = request
            buffer = try await copy.collectBody(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw BlazarError(413, "The request body is larger than \(maxBodyBytes) bytes")
        } catch {
            throw BlazarError(400, "The request body could not be read: \(error)")
        }
        if buffer.readableBytes == 0 { return .object([:]) }
        do throws(JSONParseError) {
            return try JSONParser.parse(Array(buffer.readableBytesView))
        } catch {
            throw BlazarError(400, "The request body is not valid JSON: \(error)")
        }
    }

    /// One contract call with `role`'s rights; its error as Blazar's.
    func call(
        _ method: RPCMethod, _ params: JSON, role: Role = .portal, notFound: (key: String, id: String)? = nil
    ) async throws(BlazarError) -> JSON {
        do throws(RPCError) {
            return try await methods.call(method, params: params, role: role)
        } catch {
            throw BlazarError(error, notFound: notFound)
        }
    }

    static let authTokenHeader = HTTPField.Name("X-Auth-Token")!

    static func json(_ value: JSON, status: HTTPResponse.Status) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "application/json", HTTPField.Name("OpenStack-API-Version")!: "reservation 1.0",
                .vary: "OpenStack-API-Version",
            ],
            body: .init(byteBuffer: ByteBuffer(string: value.serialized())))
    }

    static func error(_ e: BlazarError) -> Response {
        var r = json(e.json, status: .init(code: e.status))
        if e.status == 401 {
            r.headers[HTTPField.Name("WWW-Authenticate")!] = "Keystone uri=\"\""
        }
        return r
    }
}

/// Hummingbird's own errors (unknown route, wrong method) in Blazar's shape.
struct BlazarErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let e as HTTPError {
            let message =
                e.status == .notFound
                ? "The requested URL was not found on the server." : (e.body ?? e.status.reasonPhrase)
            return BlazarAPI.error(BlazarError(e.status.code, message))
        } catch {
            return BlazarAPI.error(BlazarError(500, "Internal Server Error"))
        }
    }
}
