import ArgumentParser
import BerthBlazar
import BerthCore
import BerthJSON
import BerthOpenStack
import BerthRPC
import BerthService
import BerthStore
import BerthSystemd
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

public let berthVersion = "0.1.0"

/// `berthd`: the reservation scheduler daemon.
public struct BerthdMain: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "berthd",
        abstract: "Berth reservation scheduler daemon (JSON-RPC on a Unix socket).",
        version: berthVersion)

    @Option(help: "Unix socket path (default /run/berth/berth.sock, or the config's \"socket\").")
    var socket: String?

    @Option(name: .customLong("state-dir"), help: "Directory of the SQLite state (default /var/lib/berth).")
    var stateDir: String?

    @Option(help: "Time source: system, or manual (time stands still until clock.set/clock.advance).")
    var clock: String?

    @Option(help: "With --clock manual: the starting time (RFC 3339); default: the saved manual time, else now.")
    var now: String?

    @Option(help: "JSON config file (roles, limits, log level).")
    var config: String?

    @Flag(help: "Create a demo inventory of hosts when the inventory is empty.")
    var demo = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Option(
        name: .customLong("metrics-listen"),
        help:
            "Serve Prometheus /metrics and the /calendar page on this loopback HOST:PORT (the config's metrics.listen)."
    )
    var metricsListen: String?

    @Option(
        name: .customLong("blazar-listen"),
        help: "Serve the Blazar-compatible REST API on HOST:PORT (the config's blazar_api.listen).")
    var blazarListen: String?

    @Option(
        name: .customLong("blazar-auth"),
        help: "keystone (validate X-Auth-Token with Keystone) or noauth (USER:PROJECT tokens, loopback only).")
    var blazarAuth: String?

    public init() {}

    /// Entry point for `main.swift`: parses the command line and runs the daemon. (Calling the
    /// inherited `main()` from top-level code can pick ArgumentParser's synchronous overload.)
    public static func start() async {
        do {
            let command = try parseAsRoot()
            guard let daemon = command as? BerthdMain else {
                var sync = command
                try sync.run()
                return
            }
            try await daemon.run()
        } catch {
            exit(withError: error)
        }
    }

    public func run() async throws {
        var cfg = DaemonConfig()
        if let path = config {
            do throws(BerthError) {
                cfg = try DaemonConfig.load(path: path)
            } catch {
                BerthdMain.fail(error.message)
            }
        }
        if let socket { cfg.socketPath = socket }
        if let stateDir { cfg.stateDirectory = stateDir }
        if let clock {
            guard let m = BerthClock.Mode(rawValue: clock) else { BerthdMain.fail("--clock must be system or manual") }
            cfg.clock = m
        }
        if let logLevel { cfg.logLevel = logLevel }
        if demo { cfg.demoInventory = true }
        if let metricsListen {
            do throws(BerthError) {
                _ = try ListenAddress.parse(metricsListen, allowNonLoopback: cfg.metricsAllowNonLoopback)
            } catch {
                BerthdMain.fail("--metrics-listen: \(error.message)")
            }
            cfg.metricsListen = metricsListen
        }
        if let blazarListen { cfg.blazarAPI.listen = blazarListen }
        if let blazarAuth {
            guard let a = BlazarAPISettings.Auth(rawValue: blazarAuth) else {
                BerthdMain.fail("--blazar-auth must be keystone or noauth")
            }
            cfg.blazarAPI.auth = a
        }
        do throws(BerthError) {
            try cfg.blazarAPI.check()
        } catch {
            BerthdMain.fail("blazar api: \(error.message)")
        }
        var initialTime: Timestamp? = nil
        if let now {
            guard cfg.clock == .manual else { BerthdMain.fail("--now needs --clock manual") }
            guard let t = Timestamp(rfc3339: now) else { BerthdMain.fail("--now must be an RFC 3339 timestamp") }
            initialTime = t
        }
        guard let level = Logger.Level(rawValue: cfg.logLevel) else {
            BerthdMain.fail("unknown log level \(cfg.logLevel)")
        }
        let logLevelBox = LogLevelBox(level)
        let useJournal = JournalDetection.stderrIsJournal()
        LoggingSystem.bootstrap { label in
            let inner: any LogHandler =
                useJournal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            return DynamicLevelLogHandler(inner: inner, level: logLevelBox)
        }
        let logger = Logger(label: "berthd")
        try await Daemon(
            config: cfg, initialTime: initialTime, configPath: config, logLevel: logLevelBox, logger: logger
        ).run()
    }

    static func fail(_ message: String) -> Never {
        FileHandleStderr.write("berthd: \(message)\n")
        Glibc.exit(1)
    }
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}

/// Wires the layers together and runs them as one service group.
struct Daemon {
    let config: DaemonConfig
    let initialTime: Timestamp?
    let configPath: String?
    let logLevel: LogLevelBox
    let logger: Logger

    func run() async throws {
        let notifier = SystemdNotifier()
        notifier.status("opening state in \(config.stateDirectory)")
        let descriptorLimit = UnixSocketRPCServer.raiseFileDescriptorLimit()
        if mkdir(config.stateDirectory, 0o750) != 0 && errno != EEXIST {
            BerthdMain.fail(
                "cannot create state directory \(config.stateDirectory): \(String(cString: strerror(errno)))")
        }
        let store: BerthStore
        do throws(BerthError) {
            store = try BerthStore(directory: config.stateDirectory, checkIntegrity: config.checkDatabaseAtStart)
        } catch {
            BerthdMain.fail(error.message)
        }
        let clock = BerthClock(mode: config.clock)
        let outboxWakeup = Wakeup()
        let hookWakeup = Wakeup()
        let tickerWakeup = Wakeup()
        let broadcaster = EventBroadcaster()
        let models: GPUModelTable
        do throws(BerthError) {
            models = try config.gpuModels()
        } catch {
            BerthdMain.fail(error.message)
        }
        let scheduler: Scheduler
        do throws(BerthError) {
            scheduler = try Scheduler(
                store: store, clock: clock,
                policy: SchedulerPolicy(
                    maxLeaseDuration: config.maxLeaseDuration, enforceCredits: config.enforceCredits,
                    preemption: config.preemption),
                models: models,
                broadcaster: broadcaster, logger: logger,
                actionsEnqueued: {
                    outboxWakeup.signal()
                    hookWakeup.signal()
                })
        } catch {
            BerthdMain.fail("cannot load state: \(error.message)")
        }
        if let initialTime { clock.set(initialTime) }
        let hook = PreemptionHook(config.hookSettings)
        await scheduler.setHookConfigured(config.hookSettings != nil)
        Daemon.checkHook(config.hookSettings, logger: logger)
        // Catch up: every lifecycle event missed while the daemon was down, in time order.
        let missed = await scheduler.nextDue().map { $0 <= clock.now() } ?? false
        await scheduler.processDue()
        if missed {
            logger.notice("caught up lifecycle events missed while stopped", metadata: ["now": "\(clock.now())"])
        }
        if config.demoInventory {
            do throws(BerthError) {
                let n = try await DemoInventory.seed(scheduler)
                if n > 0 { logger.notice("created demo inventory", metadata: ["hosts": "\(n)"]) }
            } catch {
                logger.error("demo inventory failed", metadata: ["error": "\(error)"])
            }
        }
        let (roleMap, warnings) = config.roleMap()
        // The built-in defaults name groups that may not exist yet; only a config file's own roles warn.
        if configPath != nil { for w in warnings { logger.warning("config: \(w)") } }
        let openstack: OpenStackAdapter? =
            config.adapter == "openstack" ? OpenStackAdapter(settings: config.openstack, logger: logger) : nil
        var simulatorFlavors = config.simulatorFlavors
        var simulatorHypervisors = config.simulatorHypervisors
        if config.demoInventory {
            simulatorFlavors += DemoInventory.flavors
            simulatorHypervisors += DemoInventory.hypervisors
        }
        let simulator =
            openstack == nil
            ? SimulatedCloud(
                usageFile: config.simulatorUsageFile, flavors: simulatorFlavors, hypervisors: simulatorHypervisors)
            : nil
        let adapter: any CloudAdapter = openstack ?? simulator!
        let catalog: any CloudCatalog = openstack ?? simulator!
        let tokenValidator: KeystoneTokenValidator? =
            config.blazarAPI.listen != nil && config.blazarAPI.auth == .keystone
            ? KeystoneTokenValidator(
                cloud: config.blazarAPI.keystoneCloud ?? config.openstack.cloud,
                cloudsFile: config.blazarAPI.keystoneCloudsFile ?? config.openstack.cloudsFile,
                cacheSeconds: config.blazarAPI.cacheSeconds, logger: logger)
            : nil
        if let tokenValidator {
            do throws(OpenStackError) {
                try tokenValidator.checkConfiguration()
            } catch {
                BerthdMain.fail("blazar api: Keystone service credentials: \(error.description)")
            }
        }
        if let reporting = adapter as? any UsageReporting {
            await scheduler.setUsageSource { reporting.reservationUsage() }
        }
        var metricsAddress: ListenAddress? = nil
        if let listen = config.metricsListen {
            do throws(BerthError) {
                metricsAddress = try ListenAddress.parse(listen, allowNonLoopback: config.metricsAllowNonLoopback)
            } catch {
                BerthdMain.fail("metrics.listen: \(error.message)")
            }
        }
        let registry = PrometheusCollectorRegistry()
        let rpcMetrics = metricsAddress.map { _ in RPCMetrics(factory: PrometheusMetricsFactory(registry: registry)) }
        let methods = BerthMethods(
            scheduler: scheduler, store: store, broadcaster: broadcaster, roles: roleMap, version: berthVersion,
            adapterHealthy: { adapter.isHealthy },
            adapterDetail: {
                var d: [String: JSON] = ["adapter_name": .string(adapter.name)]
                if let openstack {
                    d["adapter_problem"] = JSON(openstack.problem)
                    d["cloud_drift"] = .array(openstack.drift.map { .string($0) })
                }
                if let tokenValidator {
                    d["keystone"] = tokenValidator.problem == nil ? "ok" : "unreachable"
                    if let p = tokenValidator.problem { d["keystone_problem"] = .string(p) }
                }
                return d
            },
            rpcMetrics: rpcMetrics, catalog: catalog)
        EventLogging.subscribe(broadcaster, logger: logger)
        let activated = SocketActivation.listenFileDescriptors()
        let listen: UnixSocketRPCServer.Listen =
            activated.first.map { .fileDescriptor($0) } ?? .path(config.socketPath, mode: config.socketMode)
        let (connectionLimits, loweredCap) = config.connectionLimits(descriptorLimit: descriptorLimit)
        if let loweredCap {
            logger.warning(
                "max_connections lowered to fit the descriptor limit",
                metadata: [
                    "max_connections": "\(loweredCap)", "rpc.max_connections": "\(connectionLimits.maxConnections)",
                    "rlimit_nofile": "\(descriptorLimit)",
                ])
        }
        let server = UnixSocketRPCServer(
            listen: listen, handler: LoggingRPCHandler(inner: methods, logger: logger), logger: logger,
            maxLineLength: config.maxRequestBytes, limits: connectionLimits)
        do {
            try await server.bind()
        } catch {
            BerthdMain.fail("cannot listen on \(config.socketPath): \(error)")
        }
        let metricsServer = metricsAddress.map { [logger = self.logger] _ in
            MetricsHTTPServer(
                exporter: MetricsExporter(
                    registry: registry, scheduler: scheduler, store: store,
                    connections: { (server.connectionCount, server.limitCounts) }),
                scheduler: scheduler, models: models, logger: logger)
        }
        let delivery = OutboxDelivery(
            store: store, scheduler: scheduler, adapter: adapter, wakeup: outboxWakeup, hooks: false, logger: logger)
        let hookDelivery = OutboxDelivery(
            store: store, scheduler: scheduler, adapter: hook, wakeup: hookWakeup, hooks: true, logger: logger)
        var services: [any Service] = [OutboxService(delivery: delivery), OutboxService(delivery: hookDelivery)]
        if let metricsServer, let metricsAddress {
            services.append(
                ListenerService(
                    inner: metricsServer.application(metricsAddress),
                    failure: "cannot listen for metrics on \(metricsAddress.description)", logger: logger))
        }
        if let blazarAddress = try? config.blazarAPI.address() {
            let auth: any BlazarAuthenticator =
                tokenValidator.map { KeystoneAuthenticator(validator: $0) } ?? NoAuthAuthenticator()
            let api = BlazarAPI(
                methods: methods, auth: auth, catalog: catalog, maxBodyBytes: config.blazarAPI.maxBodyBytes,
                logger: logger)
            do {
                services.append(
                    ListenerService(
                        inner: try BlazarListener.application(
                            api: api, address: blazarAddress, settings: config.blazarAPI, logger: logger),
                        failure: "cannot listen for the blazar api on \(blazarAddress.description)", logger: logger))
            } catch {
                BerthdMain.fail("blazar api: cannot read the TLS certificate or key: \(error)")
            }
        }
        if let openstack { services.append(CloudReconciler(adapter: openstack, scheduler: scheduler, store: store)) }
        if clock.mode == .system { services.append(LifecycleTicker(scheduler: scheduler, wakeup: tickerWakeup)) }
        if let interval = notifier.watchdogPingInterval() {
            services.append(WatchdogService(scheduler: scheduler, notifier: notifier, interval: interval))
        }
        let configPath = self.configPath
        let logLevel = self.logLevel
        let logger = self.logger
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        services.append(
            ReloadService(signals: hangups) {
                notifier.reloading()
                defer { notifier.ready(status: "serving (config reloaded)") }
                guard let configPath else { return }
                do throws(BerthError) {
                    let fresh = try DaemonConfig.load(path: configPath)
                    let (map, warnings) = fresh.roleMap()
                    for w in warnings { logger.warning("config: \(w)") }
                    methods.updateRoles(map)
                    if let l = Logger.Level(rawValue: fresh.logLevel) { logLevel.set(l) }
                    hook.update(fresh.hookSettings)
                    if let openstack {
                        if fresh.adapter != "openstack" {
                            logger.warning("config: changing the adapter takes a restart; keeping openstack")
                        }
                        // clouds.yaml may have changed even when berthd's config did not: read both again.
                        await openstack.reload(fresh.openstack)
                        await openstack.check()
                    }
                    await scheduler.setHookConfigured(fresh.hookSettings != nil)
                    Daemon.checkHook(fresh.hookSettings, logger: logger)
                    logger.notice("configuration reloaded", metadata: ["config": "\(configPath)"])
                } catch {
                    logger.error(
                        "reload failed; keeping the previous configuration", metadata: ["error": "\(error.message)"])
                }
            })
        let leases = await scheduler.leaseCount
        let hosts = await scheduler.hostCount
        let where_ = activated.isEmpty ? config.socketPath : "socket-activated fd \(activated[0])"
        logger.notice(
            "berthd \(berthVersion) listening",
            metadata: [
                "socket": "\(where_)", "clock": "\(clock.mode.rawValue)", "hosts": "\(hosts)", "leases": "\(leases)",
            ])
        // READY=1 is sent by the RPC service once the group runs (and traps SIGTERM), not here.
        services.append(
            RPCServerService(
                server: server, methods: methods, notifier: notifier,
                readyStatus: "serving \(hosts) hosts, \(leases) leases on \(where_)"))
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [],
                logger: logger))
        try await group.run()
        await openstack?.shutdown()
        await tokenValidator?.shutdown()
        notifier.stopping(status: "stopped")
        logger.notice("berthd stopped")
    }
}

extension Daemon {
    /// A missing hook is reported at once (runs are still queued, and fail visibly until it exists).
    static func checkHook(_ s: PreemptionHook.Settings?, logger: Logger) {
        guard let program = s?.command.first else { return }
        if access(program, X_OK) != 0 {
            logger.error(
                "preemption hook is missing or not executable; hook runs will fail and be retried until it is fixed",
                metadata: ["hook": "\(program)", "error": "\(String(cString: strerror(errno)))"])
        } else {
            logger.info("preemption hook configured", metadata: ["hook": "\(s!.command.joined(separator: " "))"])
        }
    }
}

/// The log level, changeable at run time (SIGHUP reload).
final class LogLevelBox: Sendable {
    private let value: Mutex<Logger.Level>
    init(_ l: Logger.Level) { value = Mutex(l) }
    func get() -> Logger.Level { value.withLock { $0 } }
    func set(_ l: Logger.Level) { value.withLock { $0 = l } }
}

/// Forwards to a real handler, filtering on the shared, reloadable level.
struct DynamicLevelLogHandler: LogHandler {
    var inner: any LogHandler
    let level: LogLevelBox

    var logLevel: Logger.Level {
        get { level.get() }
        set { level.set(newValue) }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= level.get() else { return }
        inner.log(event: event)
    }
}
