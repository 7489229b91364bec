import BerthContract
import BerthCore
import BerthJSON
import BerthOpenStack
import BerthRPC
import BerthService

#if canImport(Glibc)
    import Glibc
#endif

/// berthd's configuration file (JSON). Command-line flags override it; SIGHUP re-reads it.
public struct DaemonConfig: Sendable {
    public var socketPath = "/run/berth/berth.sock"
    public var stateDirectory = "/var/lib/berth"
    public var clock = BerthClock.Mode.system
    public var logLevel = "info"
    public var maxRequestBytes = 1 << 20
    /// `max_connections`: connections served at once; more are refused with -32007.
    public var maxConnections = 4096
    /// `max_connections_per_uid`: connections one non-root uid may hold (0: no per-uid cap).
    public var maxConnectionsPerUID = 1024
    /// `idle_timeout_s`: close a connection with no request (and no subscription) for this long; 0: never.
    public var idleTimeout: Int64 = 300
    /// `request_timeout_s`: close a connection whose request line is not finished within this long; 0: never.
    public var requestTimeout: Int64 = 30
    /// `write_timeout_s`: close a connection that takes none of its replies for this long; 0: never.
    public var writeTimeout: Int64 = 60
    public var socketMode: UInt16 = 0o666
    public var maxLeaseDuration: Int64? = nil
    public var demoInventory = false
    /// Refuse leases the project's credits cannot pay for (-32003); off by default: costs are recorded.
    public var enforceCredits = false
    /// `check_database_at_start`: run SQLite's quick_check on the database before opening it, and
    /// refuse to start on a corrupt one (on by default; see docs/reliability.md for its cost).
    public var checkDatabaseAtStart = true
    /// Extra or replacement GPU models (same format as data/gpu-models.json), merged over the built-in table.
    public var gpuModelsFile: String? = nil
    /// Preemptible lifetimes, notice and preempt action (config section `preemption`).
    public var preemption = PreemptionPolicy()
    /// The preemption hook's argv prefix (`preemption.hook`), nil for none.
    public var preemptionHook: [String]? = nil
    public var preemptionHookTimeout: Int64 = 30
    /// Where actions go: the embedded `simulator` (default) or `openstack`.
    public var adapter = "simulator"
    /// The `openstack` section (cloud name, clouds.yaml, timeouts, resource classes).
    public var openstack = OpenStackSettings()
    /// Prometheus metrics and the calendar page (`metrics.listen`, "host:port"); nil: off.
    public var metricsListen: String? = nil
    /// `metrics.allow_non_loopback`: serve metrics on a non-loopback address (they are unauthenticated).
    public var metricsAllowNonLoopback = false
    /// `simulator.usage_file`: reservation id → units in use, the simulator's stand-in for running servers.
    public var simulatorUsageFile: String? = nil
    /// `simulator.flavors` and `simulator.hypervisors`: what the simulated cloud has (Nova's shapes).
    public var simulatorFlavors: [CloudFlavor] = []
    public var simulatorHypervisors: [Hypervisor] = []
    /// The Blazar-compatible REST API (config section `blazar_api`); off without `listen`.
    public var blazarAPI = BlazarAPISettings()
    /// Role name → users and groups (names or numeric ids).
    public var roles: [Role: (users: [String], groups: [String])] = [
        .portal: ([], ["berth-portal"]),
        .hook: ([], ["berth-hook"]),
    ]

    public init() {}

    /// Reads the file; every problem is reported with its key so operators can fix it in one go.
    public static func load(path: String, base: DaemonConfig = DaemonConfig()) throws(BerthError) -> DaemonConfig {
        let bytes = try readFile(path, what: "config file")
        let json: JSON
        do throws(JSONParseError) {
            json = try JSONParser.parse(bytes)
        } catch {
            throw BerthError(.invalidParams, "config file \(path) is not valid JSON: \(error)")
        }
        var r = ParamReader(json)
        var c = base
        if let v = r.string("socket") { c.socketPath = v }
        if let v = r.string("state_dir") { c.stateDirectory = v }
        if let v = r.enumValue("clock", BerthClock.Mode.self) { c.clock = v }
        if let v = r.string("log_level") {
            if ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(v) {
                c.logLevel = v
            } else {
                r.fail("log_level", "must be one of trace, debug, info, notice, warning, error, critical")
            }
        }
        if let v = r.int("max_request_bytes", min: 1024, max: 64 << 20) { c.maxRequestBytes = Int(v) }
        if let v = r.int("max_connections", min: 1, max: 1 << 20) { c.maxConnections = Int(v) }
        if let v = r.int("max_connections_per_uid", min: 0, max: 1 << 20) { c.maxConnectionsPerUID = Int(v) }
        if let v = r.int("idle_timeout_s", min: 0, max: 86_400) { c.idleTimeout = v }
        if let v = r.int("request_timeout_s", min: 0, max: 3600) { c.requestTimeout = v }
        if let v = r.int("write_timeout_s", min: 0, max: 3600) { c.writeTimeout = v }
        if let v = r.string("socket_mode") {
            if let m = UInt16(v, radix: 8), m <= 0o777 {
                c.socketMode = m
            } else {
                r.fail("socket_mode", "expected an octal mode such as \"0660\"")
            }
        }
        if let v = r.int("max_lease_duration_s", min: 1) { c.maxLeaseDuration = v }
        if let v = r.bool("demo_inventory") { c.demoInventory = v }
        if let v = r.bool("enforce_credits") { c.enforceCredits = v }
        if let v = r.bool("check_database_at_start") { c.checkDatabaseAtStart = v }
        if let v = r.string("gpu_models_file", maxLength: 4096) { c.gpuModelsFile = v }
        if let section = r.raw("preemption") {
            var pr = ParamReader(section, path: "preemption")
            if let v = pr.int("default_min_lifetime_s", min: 1) { c.preemption.defaultMinLifetime = v }
            if let v = pr.int("max_min_lifetime_s", min: 1) { c.preemption.maxMinLifetime = v }
            if let v = pr.int("notice_s", min: 0) { c.preemption.notice = v }
            if let v = pr.enumValue("action", PreemptionPolicy.PreemptAction.self) { c.preemption.action = v }
            if let v = pr.raw("hook") {
                switch v {
                case .string(let s) where !s.isEmpty: c.preemptionHook = [s]
                case .array(let items)
                where !items.isEmpty && items.allSatisfy({ ($0.stringValue ?? "").isEmpty == false }):
                    c.preemptionHook = items.compactMap(\.stringValue)
                default: pr.fail("hook", "expected a command path or a non-empty array of strings (argv)")
                }
                if let program = c.preemptionHook?.first, !program.hasPrefix("/") {
                    pr.fail("hook", "the hook command must be an absolute path (got \(program))")
                }
            }
            if let v = pr.int("hook_timeout_s", min: 1, max: 3600) { c.preemptionHookTimeout = v }
            if c.preemption.defaultMinLifetime > c.preemption.maxMinLifetime {
                pr.fail("default_min_lifetime_s", "is longer than max_min_lifetime_s (\(c.preemption.maxMinLifetime))")
            }
            pr.rejectUnknown()
            r.merge(pr.errors)
        }
        if let v = r.string("adapter") {
            if ["simulator", "openstack"].contains(v) {
                c.adapter = v
            } else {
                r.fail("adapter", "must be simulator or openstack")
            }
        }
        if let section = r.raw("openstack") {
            var o = ParamReader(section, path: "openstack")
            if let v = o.string("cloud") { c.openstack.cloud = v }
            if let v = o.string("clouds_file", maxLength: 4096) { c.openstack.cloudsFile = v }
            if let v = o.int("request_timeout_s", min: 1, max: 600) { c.openstack.requestTimeout = v }
            if let v = o.int("delete_wait_s", min: 0, max: 3600) { c.openstack.deleteWait = v }
            if let v = o.int("reconcile_interval_s", min: 0, max: 86_400) { c.openstack.reconcileInterval = v }
            if let classes = o.raw("resource_classes") {
                if case .object(let m) = classes, m.values.allSatisfy({ $0.stringValue?.isEmpty == false }) {
                    c.openstack.resourceClasses = m.compactMapValues(\.stringValue)
                } else {
                    o.fail("resource_classes", "expected an object of MIG profile → resource class name")
                }
            }
            if let flavor = o.raw("gpu_flavor") {
                var f = ParamReader(flavor, path: "openstack.gpu_flavor")
                if let v = f.int("vcpus", min: 1) { c.openstack.gpuFlavor.vcpus = v }
                if let v = f.int("memory_mb", min: 1) { c.openstack.gpuFlavor.memoryMB = v }
                if let v = f.int("disk_gb", min: 0) { c.openstack.gpuFlavor.diskGB = v }
                f.rejectUnknown()
                o.merge(f.errors)
            }
            o.rejectUnknown()
            r.merge(o.errors)
        }
        if let section = r.raw("metrics") {
            var m = ParamReader(section, path: "metrics")
            if let v = m.string("listen") { c.metricsListen = v }
            if let v = m.bool("allow_non_loopback") { c.metricsAllowNonLoopback = v }
            m.rejectUnknown()
            r.merge(m.errors)
            if let v = c.metricsListen {
                do throws(BerthError) {
                    _ = try ListenAddress.parse(v, allowNonLoopback: c.metricsAllowNonLoopback)
                } catch {
                    r.fail("metrics.listen", error.message)
                }
            }
        }
        if let section = r.raw("simulator") {
            var sm = ParamReader(section, path: "simulator")
            if let v = sm.string("usage_file", maxLength: 4096) { c.simulatorUsageFile = v }
            if let list = sm.array("flavors") {
                for (i, f) in list.enumerated() {
                    if let flavor = CloudFlavor(nova: f) {
                        c.simulatorFlavors.append(flavor)
                    } else {
                        sm.fail(
                            "flavors[\(i)]",
                            "expected a Nova flavor: {\"id\", \"name\", \"vcpus\", \"ram\", \"disk\", \"extra_specs\"}")
                    }
                }
            }
            if let list = sm.array("hypervisors") {
                for (i, h) in list.enumerated() {
                    guard let name = h["name"]?.stringValue ?? h["hypervisor_hostname"]?.stringValue,
                        let vcpus = h["vcpus"]?.intValue, let mem = h["memory_mb"]?.intValue
                    else {
                        sm.fail("hypervisors[\(i)]", "expected {\"name\", \"vcpus\", \"memory_mb\", \"local_gb\"}")
                        continue
                    }
                    c.simulatorHypervisors.append(
                        Hypervisor(name: name, vcpus: vcpus, memoryMB: mem, diskGB: h["local_gb"]?.intValue ?? 0))
                }
            }
            sm.rejectUnknown()
            r.merge(sm.errors)
        }
        if let section = r.raw("blazar_api") {
            var b = ParamReader(section, path: "blazar_api")
            if let v = b.string("listen") { c.blazarAPI.listen = v }
            if let v = b.enumValue("auth", BlazarAPISettings.Auth.self) { c.blazarAPI.auth = v }
            if let v = b.int("max_body_bytes", min: 1024, max: 64 << 20) { c.blazarAPI.maxBodyBytes = Int(v) }
            if let k = b.raw("keystone") {
                var kr = ParamReader(k, path: "blazar_api.keystone")
                if let v = kr.string("cloud") { c.blazarAPI.keystoneCloud = v }
                if let v = kr.string("clouds_file", maxLength: 4096) { c.blazarAPI.keystoneCloudsFile = v }
                if let v = kr.int("cache_s", min: 0, max: 86_400) { c.blazarAPI.cacheSeconds = v }
                kr.rejectUnknown()
                b.merge(kr.errors)
            }
            if let t = b.raw("tls") {
                var tr = ParamReader(t, path: "blazar_api.tls")
                c.blazarAPI.tlsCertificate = tr.string("cert", required: true, maxLength: 4096)
                c.blazarAPI.tlsKey = tr.string("key", required: true, maxLength: 4096)
                tr.rejectUnknown()
                b.merge(tr.errors)
            }
            b.rejectUnknown()
            r.merge(b.errors)
            do throws(BerthError) {
                try c.blazarAPI.check()
            } catch {
                r.fail("blazar_api.listen", error.message)
            }
        }
        if let roles = r.raw("roles") {
            var rr = ParamReader(roles, path: "roles")
            for role in Role.allCases {
                guard let entry = rr.raw(role.rawValue) else { continue }
                var er = ParamReader(entry, path: "roles.\(role.rawValue)")
                let users = er.stringArray("users") ?? []
                let groups = er.stringArray("groups") ?? []
                er.rejectUnknown()
                rr.merge(er.errors)
                c.roles[role] = (users, groups)
            }
            rr.rejectUnknown()
            r.merge(rr.errors)
        }
        do throws(BerthError) {
            try r.finish()
        } catch {
            throw BerthError(.invalidParams, "config file \(path): \(error.message)")
        }
        return c
    }

    /// The connection limits for the RPC server. `descriptorLimit` is the process's soft
    /// `RLIMIT_NOFILE`: `max_connections` is lowered to leave `reservedDescriptors` for the store,
    /// the event loops, the metrics listener and the connection being refused (the second value is
    /// the configured cap when it was lowered, for a warning).
    public func connectionLimits(descriptorLimit: Int) -> (RPCConnectionLimits, lowered: Int?) {
        func timeout(_ s: Int64) -> Duration? { s > 0 ? .seconds(s) : nil }
        var cap = maxConnections
        var lowered: Int? = nil
        if descriptorLimit > 0, cap > descriptorLimit - Self.reservedDescriptors {
            lowered = cap
            cap = max(1, descriptorLimit - Self.reservedDescriptors)
        }
        let limits = RPCConnectionLimits(
            maxConnections: cap,
            maxConnectionsPerUID: maxConnectionsPerUID,
            idleTimeout: timeout(idleTimeout),
            requestTimeout: timeout(requestTimeout),
            writeTimeout: timeout(writeTimeout)
        )
        return (limits, lowered)
    }

    /// Descriptors kept free of connections: the database and its WAL, event loops, the metrics
    /// listener, hook processes, and the descriptor a refused connection holds while it is told so.
    public static let reservedDescriptors = 256

    /// The preemption hook's settings, nil when none is configured.
    public var hookSettings: PreemptionHook.Settings? {
        preemptionHook.map { PreemptionHook.Settings(command: $0, timeout: .seconds(preemptionHookTimeout)) }
    }

    /// The built-in GPU model table, with the operator's file merged over it.
    public func gpuModels() throws(BerthError) -> GPUModelTable {
        guard let path = gpuModelsFile else { return .builtIn }
        let bytes = try DaemonConfig.readFile(path, what: "GPU model file")
        do throws(BerthError) {
            return GPUModelTable.builtIn.merging(try GPUModelTable(jsonText: String(decoding: bytes, as: UTF8.self)))
        } catch {
            throw BerthError(.invalidParams, "GPU model file \(path): \(error.message)")
        }
    }

    static func readFile(_ path: String, what: String) throws(BerthError) -> [UInt8] {
        guard let f = fopen(path, "r") else {
            throw BerthError(.invalidParams, "cannot read \(what) \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes.append(contentsOf: buf[0..<n])
        }
        return bytes
    }

    /// Resolves role members to ids; names that do not exist on this machine are returned as warnings.
    public func roleMap() -> (RoleMap, warnings: [String]) {
        var map = RoleMap()
        var warnings: [String] = []
        // Least powerful first, so a member listed twice keeps the stronger role.
        for role in [Role.hook, .portal, .admin] {
            guard let entry = roles[role] else { continue }
            for u in entry.users {
                if let id = RoleMap.userID(u) {
                    map.users[id] = role
                } else {
                    warnings.append("roles.\(role.rawValue): no user '\(u)'")
                }
            }
            for g in entry.groups {
                if let id = RoleMap.groupID(g) {
                    map.groups[id] = role
                } else {
                    warnings.append("roles.\(role.rawValue): no group '\(g)'")
                }
            }
        }
        return (map, warnings)
    }
}

/// The Blazar-compatible REST API's settings (config section `blazar_api`, `--blazar-listen`,
/// `--blazar-auth`).
public struct BlazarAPISettings: Sendable {
    public enum Auth: String, Sendable, CaseIterable { case keystone, noauth }
    /// "host:port"; nil: the API is off.
    public var listen: String? = nil
    public var auth = Auth.keystone
    /// The clouds.yaml entry with Berth's service credentials (default: the `openstack` section's).
    public var keystoneCloud: String? = nil
    public var keystoneCloudsFile: String? = nil
    /// How long a validated token is trusted without asking Keystone again (never past its expiry).
    public var cacheSeconds: Int64 = 300
    public var tlsCertificate: String? = nil
    public var tlsKey: String? = nil
    public var maxBodyBytes = 1 << 20

    /// The listen address; `noauth` trusts whatever token it is sent, so it is loopback only.
    func address() throws(BerthError) -> ListenAddress? {
        guard let listen else { return nil }
        let a = try ListenAddress.parse(listen)
        if auth == .noauth && !a.isLoopback {
            throw BerthError(
                .invalidParams,
                "\(a.host) is not a loopback address; \"auth\": \"noauth\" trusts any X-Auth-Token, so it is served on loopback only (127.0.0.1 or ::1); use \"auth\": \"keystone\""
            )
        }
        return a
    }

    func check() throws(BerthError) { _ = try address() }
}
