import BerthBlazar
import BerthCore
import BerthOpenStack
import BerthService
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// The Blazar-compatible REST API's HTTP listener (Hummingbird), run in berthd's service group.
enum BlazarListener {
    /// The application serving `api` on `address`, with TLS when the settings name a certificate.
    static func application(
        api: BlazarAPI, address: ListenAddress, settings: BlazarAPISettings, logger: Logger
    ) throws -> some Service {
        let router = Router(context: BasicRequestContext.self)
        api.addRoutes(to: router)
        // A connection that sends nothing (or only blank lines) for this long is closed, so idle
        // or stalled clients cannot hold connections for ever.
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(15)))
        let server: HTTPServerBuilder
        if let cert = settings.tlsCertificate, let key = settings.tlsKey {
            let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(http1, tlsConfiguration: tls)
        } else {
            server = http1
        }
        let scheme = settings.tlsCertificate == nil ? "http" : "https"
        return Application(
            router: router, server: server,
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "berthd"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? address.port
                logger.notice(
                    "blazar api listening",
                    metadata: [
                        "address": "\(ListenAddress(host: address.host, port: port).description)",
                        "url":
                            "\(scheme)://\(address.host.contains(":") ? "[\(address.host)]" : address.host):\(port)/v1",
                        "auth": "\(settings.auth.rawValue)",
                    ])
            },
            logger: logger)
    }
}

/// Keystone tokens for the REST API, validated by the OpenStack layer's validator.
struct KeystoneAuthenticator: BlazarAuthenticator {
    let validator: KeystoneTokenValidator

    func authenticate(token: String?) async throws(BlazarError) -> BlazarCaller {
        guard let token, !token.isEmpty, token.utf8.count <= 8192 else { throw BlazarError.unauthorized }
        let v: ValidatedToken?
        do throws(OpenStackError) {
            v = try await validator.validate(token)
        } catch {
            throw BlazarError(
                503, "The Keystone service is temporarily unavailable.",
                extra: ["reason": "unavailable", "berth_message": .string(error.description)])
        }
        guard let v else { throw BlazarError.unauthorized }
        return BlazarCaller(userID: v.userID, projectID: v.projectID, roles: v.roles)
    }
}

/// An HTTP listener in the service group whose failure (a port in use, say) stops berthd with a
/// message naming the listener, rather than Hummingbird's own.
struct ListenerService<Inner: Service>: Service {
    let inner: Inner
    let failure: String
    let logger: Logger

    func run() async throws {
        do {
            try await inner.run()
        } catch is CancellationError {
            return
        } catch {
            logger.critical("\(failure): \(error)")
            throw error
        }
    }
}
