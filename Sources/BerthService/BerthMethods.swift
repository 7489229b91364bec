import BerthContract
import BerthCore
import BerthJSON
import BerthRPC
import BerthStore
import Synchronization

/// The contract's methods behind the socket: checks the caller's role, then routes each call to
/// the scheduler actor, the store (reads that need no actor), or itself (discovery, health).
public final class BerthMethods: RPCHandler {
    let scheduler: Scheduler
    let queries: StoreQueries
    let broadcaster: EventBroadcaster
    let roles: Mutex<RoleMap>
    let clockMode: BerthClock.Mode
    let startedAt: ContinuousClock.Instant
    let version: String
    let adapterHealth: @Sendable () -> Bool
    /// Extra `system.health` fields about the adapter (its name, what is wrong, drift found).
    let adapterDetail: @Sendable () -> [String: JSON]
    let draining = Atomic<Bool>(false)
    /// Request counts and latency (metrics listener); nil when metrics are off.
    let rpcMetrics: RPCMetrics?
    /// Reads the flavors that instance reservations name (`flavor_id`).
    let flavors: FlavorResolution

    public init(
        scheduler: Scheduler, store: BerthStore, broadcaster: EventBroadcaster, roles: RoleMap, version: String,
        adapterHealthy: @escaping @Sendable () -> Bool = { true },
        adapterDetail: @escaping @Sendable () -> [String: JSON] = { [:] },
        rpcMetrics: RPCMetrics? = nil, catalog: any CloudCatalog = SimulatedCloud()
    ) {
        self.rpcMetrics = rpcMetrics
        self.flavors = FlavorResolution(catalog: catalog, models: scheduler.models)
        self.adapterDetail = adapterDetail
        self.scheduler = scheduler
        self.queries = StoreQueries(store: store)
        self.broadcaster = broadcaster
        self.roles = Mutex(roles)
        self.clockMode = scheduler.clock.mode
        self.startedAt = .now
        self.version = version
        self.adapterHealth = adapterHealthy
    }

    /// The scheduler's time (the manual clock in tests and simulations).
    public var now: Timestamp { scheduler.clock.now() }

    /// Replaces the role table (SIGHUP reload).
    public func updateRoles(_ map: RoleMap) { roles.withLock { $0 = map } }

    /// From now on, mutating calls answer `unavailable` (graceful stop in progress).
    public func beginDraining() { draining.store(true, ordering: .relaxed) }

    public func admit(_ peer: PeerCredentials) -> RPCError? {
        if roles.withLock({ $0.role(for: peer) }) == nil {
            return RPCError(
                .forbidden,
                message:
                    "uid \(peer.uid) (gid \(peer.gid)) has no Berth role; ask an operator to map its user or group")
        }
        return nil
    }

    public func handle(method: String, params: JSON?, context: RPCContext) async throws(RPCError) -> JSON {
        guard let rpcMetrics else { return try await handleCall(method: method, params: params, context: context) }
        let started = ContinuousClock.now
        do throws(RPCError) {
            let result = try await handleCall(method: method, params: params, context: context)
            rpcMetrics.record(method: method, code: 0, duration: ContinuousClock.now - started)
            return result
        } catch {
            rpcMetrics.record(method: method, code: error.code, duration: ContinuousClock.now - started)
            throw error
        }
    }

    func handleCall(method name: String, params: JSON?, context: RPCContext) async throws(RPCError) -> JSON {
        guard let method = RPCMethod(rawValue: name), !(method.isManualClockOnly && clockMode != .manual) else {
            throw RPCError.methodNotFound(name)
        }
        guard let role = roles.withLock({ $0.role(for: context.peer) }) else {
            throw BerthMethods.rpcError(BerthError(.forbidden, "caller has no Berth role"))
        }
        return try await call(method, params: params, role: role, context: context)
    }

    /// One contract call by a caller whose role is already known: the socket's callers by their
    /// uid and gid, the REST API's by their Keystone token (it applies Blazar's policy first).
    public func call(_ method: RPCMethod, params: JSON?, role: Role, context: RPCContext? = nil)
        async throws(RPCError) -> JSON
    {
        let name = method.rawValue
        guard !(method.isManualClockOnly && clockMode != .manual) else { throw RPCError.methodNotFound(name) }
        guard method.allows(role) else {
            throw BerthMethods.rpcError(BerthError(.forbidden, "role '\(role.rawValue)' may not call \(name)"))
        }
        do throws(BerthError) {
            if draining.load(ordering: .relaxed), method.isMutating || method.isManualClockOnly {
                throw BerthError(.unavailable, "berthd is shutting down; retry against the restarted daemon")
            }
            switch method {
            case .rpcDiscover:
                try BerthMethods.noParams(params)
                return try BerthMethods.openRPCDocument()
            case .systemHealth:
                try BerthMethods.noParams(params)
                return health()
            case .eventsList: return try queries.eventsList(params)
            case .actionsList: return try queries.actionsList(params)
            case .eventsSubscribe:
                guard let context else { throw BerthError(.invalidParams, "events.subscribe needs a connection") }
                var r = ParamReader(params)
                let types = r.eventTypePatterns("types") ?? []
                try r.finish()
                let id = broadcaster.subscribe(
                    connection: context.connection, sink: context.notifications, patterns: types)
                return ["subscription": .string(id)]
            default:
                let resolved = FlavorResolution.applies(to: method) ? try await flavors.resolve(params) : params
                return try await scheduler.call(method, resolved)
            }
        } catch {
            throw BerthMethods.rpcError(error)
        }
    }

    /// Host properties with their private flag, for the REST API (not a contract method).
    public func hostProperties(all: Bool) async throws(BerthError) -> JSON {
        try await scheduler.hostPropertyList(all: all)
    }

    /// Marks a host property private or public, for the REST API (not a contract method).
    public func setHostPropertyPrivate(_ name: String, _ isPrivate: Bool) async throws(BerthError) -> JSON {
        if draining.load(ordering: .relaxed) {
            throw BerthError(.unavailable, "berthd is shutting down; retry against the restarted daemon")
        }
        return try await scheduler.hostPropertyUpdate(name, isPrivate: isPrivate)
    }

    /// `system.health`: storage from the last commit, the adapter's own report, uptime.
    func health() -> JSON {
        let uptime = ContinuousClock.now - startedAt
        let adapterOK = adapterHealth()
        let storage = BerthMethods.storageHealth(scheduler.commits.storageFault)
        var health: [String: JSON] = [
            "status": adapterOK && storage == "ok" ? "ok" : "degraded", "version": .string(version),
            "uptime_s": .int(uptime.components.seconds), "storage": .string(storage),
            "adapter": adapterOK ? "ok" : "degraded", "clock": .string(clockMode.rawValue),
        ]
        if let fault = scheduler.commits.storageFault { health["storage_problem"] = .string(fault.message) }
        for (k, v) in adapterDetail() { health[k] = v }
        return .object(health)
    }

    public func connectionClosed(_ connection: RPCConnectionID) async {
        broadcaster.connectionClosed(connection)
    }

    /// The contract's `storage` of `system.health`: `ok` until a commit fails, then `read_only`
    /// when SQLite or the file system said so, `error` for anything else (full, I/O, locked,
    /// corrupt), until a commit succeeds again.
    static func storageHealth(_ fault: BerthError?) -> String {
        guard let fault else { return "ok" }
        return fault.data["storage_fault"] == .string("read_only") ? "read_only" : "error"
    }

    /// A subscriber waits for events, however long: the idle timeout must not close it.
    public func keepsConnectionOpen(_ connection: RPCConnectionID) -> Bool {
        broadcaster.hasSubscriptions(connection)
    }

    static func noParams(_ params: JSON?) throws(BerthError) {
        var r = ParamReader(params)
        try r.finish()
    }

    public static func rpcError(_ e: BerthError) -> RPCError {
        RPCError(code: e.code.rawValue, message: e.message, data: e.dataJSON)
    }

    static let parsedDocument: Result<JSON, BerthError> = {
        do throws(JSONParseError) {
            return .success(try JSONParser.parse(openRPCDocumentText))
        } catch {
            return .failure(BerthError(.internalError, "embedded OpenRPC document is invalid: \(error)"))
        }
    }()

    static func openRPCDocument() throws(BerthError) -> JSON { try parsedDocument.get() }
}
