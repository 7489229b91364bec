import BerthCore
import BerthJSON
import Foundation
import Logging
import NIOCore
import Synchronization

/// Berth's `openstack` settings (config section `openstack`).
public struct OpenStackSettings: Sendable, Equatable {
    /// Cloud name in clouds.yaml (else `OS_CLOUD`, else the only cloud there).
    public var cloud: String?
    /// A clouds.yaml to read instead of `OS_CLIENT_CONFIG_FILE` and the standard search path.
    public var cloudsFile: String?
    public var requestTimeout: Int64 = 30
    /// How long one delivery waits for Nova to finish deleting servers before retrying later.
    public var deleteWait: Int64 = 120
    /// MIG profile → placement resource class (default `CUSTOM_MIG_<PROFILE>`, e.g. `CUSTOM_MIG_1G_5GB`).
    public var resourceClasses: [String: String] = [:]
    /// Size of the private flavor of a `kind: gpu` reservation (the GPU slice comes from its resource class).
    public var gpuFlavor = InstanceSize(vcpus: 4, memoryMB: 16_384, diskGB: 40)
    /// How often Nova's aggregates are compared with what Berth expects (0: never).
    public var reconcileInterval: Int64 = 300

    public init() {}

    public func resourceClass(for profile: String) -> String {
        resourceClasses[profile] ?? MIGResourceClass.defaultName(for: profile)
    }
}

/// The `openstack` adapter: Keystone v3 and Nova. Every step is idempotent (deterministic names
/// and ids; a 404 on delete and a 409 "already a member" count as done), so an action delivered
/// twice, or resumed after a crash, converges.
///
/// Objects (see docs/openstack.md): per reservation, an aggregate `berth-<reservation id>` with
/// metadata `reservation`, `berth_lease_id`, `filter_tenant_id`; per instance or GPU reservation,
/// a private flavor whose id is the reservation id, with extra specs tying it to that aggregate
/// and `resources:<class>=1` for a MIG profile, shared with the lease's project.
public final class OpenStackAdapter: CloudAdapter {
    struct Connection: Sendable {
        var cloud: CloudConfig
        var http: OpenStackHTTP
        var nova: NovaClient
    }

    struct State {
        var settings: OpenStackSettings
        var connection: Connection?
        /// nil: healthy; otherwise what is wrong, as logged.
        var problem: String? = "not connected yet"
        var drift: [String] = []
        /// Bumped by `reload`: outcomes of calls made with older settings no longer say anything.
        var generation = 0
    }

    private let state: Mutex<State>
    /// Reservation id → units in use, measured at each reconciliation (OpenStackUsage.swift).
    let measuredUsage = Mutex<[String: Int64]>([:])
    private let environment: [String: String]
    let logger: Logger

    public init(
        settings: OpenStackSettings, environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger
    ) {
        state = Mutex(State(settings: settings))
        self.environment = environment
        self.logger = logger
    }

    public var name: String { "openstack" }
    public var isHealthy: Bool { state.withLock { $0.problem == nil } }
    /// What is wrong while degraded.
    public var problem: String? { state.withLock { $0.problem } }
    /// Differences found by the last reconciliation.
    public var drift: [String] { state.withLock { $0.drift } }
    public var settings: OpenStackSettings { state.withLock { $0.settings } }

    /// New settings (SIGHUP): the next call reads clouds.yaml again.
    public func reload(_ s: OpenStackSettings) async {
        let old = state.withLock { st -> Connection? in
            let c = st.connection
            st.settings = s
            st.connection = nil
            st.generation += 1
            return c
        }
        await old?.http.shutdown()
    }

    public func shutdown() async {
        let c = state.withLock { st -> Connection? in
            defer { st.connection = nil }
            return st.connection
        }
        await c?.http.shutdown()
    }

    func connection() throws(OpenStackError) -> Connection {
        if let c = state.withLock({ $0.connection }) { return c }
        let s = settings
        let cloud = try CloudConfig.load(cloud: s.cloud, file: s.cloudsFile, environment: environment)
        let http = try OpenStackHTTP(cloud: cloud, requestTimeout: .seconds(s.requestTimeout))
        let keystone = KeystoneSession(cloud: cloud, http: http)
        let c = Connection(
            cloud: cloud, http: http,
            nova: NovaClient(keystone: keystone, http: http, interface: cloud.interface, region: cloud.regionName))
        let raced = state.withLock { st -> Connection? in
            if let existing = st.connection { return existing }
            st.connection = c
            return nil
        }
        if raced != nil {
            Task { await http.shutdown() }
            return raced!
        }
        return c
    }

    /// Records the outcome of talking to the cloud for `system.health`, logging each change once.
    func note(_ error: OpenStackError?, generation: Int) {
        let problem: String?
        switch error {
        case nil: problem = nil
        case .config(let m)?: problem = "configuration: \(m)"
        case .auth(let m)?: problem = "authentication: \(m)"
        case .unreachable(let m)?: problem = "unreachable: \(m)"
        case .http(let status, _, _, _, _)? where status >= 500: problem = error!.description
        default: return  // a 4xx about one object says nothing about the cloud as a whole
        }
        let changed = state.withLock { st -> Bool in
            guard st.generation == generation, st.problem != problem else { return false }
            st.problem = problem
            return true
        }
        guard changed else { return }
        if let problem {
            logger.error("openstack adapter degraded", metadata: ["problem": "\(problem)"])
        } else {
            logger.notice(
                "openstack adapter connected",
                metadata: ["cloud": "\(state.withLock { $0.connection?.cloud.name ?? "?" })"])
        }
    }

    /// Authenticates once and finds the compute endpoint (at start and after a reload), so a
    /// broken configuration is reported at once rather than on the first lease.
    public func check() async {
        let generation = state.withLock { $0.generation }
        do throws(OpenStackError) {
            let c = try connection()
            _ = try await c.nova.call(.GET, "/os-aggregates")
            note(nil, generation: generation)
        } catch {
            note(error, generation: generation)
        }
    }

    public func perform(_ action: OutboxAction) async throws {
        let generation = state.withLock { $0.generation }
        do throws(OpenStackError) {
            let c = try connection()
            try await run(action, c.nova)
            note(nil, generation: generation)
        } catch {
            note(error, generation: generation)
            throw error
        }
    }

    func run(_ a: OutboxAction, _ nova: NovaClient) async throws(OpenStackError) {
        let p = a.payload
        switch a.kind {
        case "lease.start", "lease.update":
            try await ensureLease(p, nova)
        case "lease.end":
            try await endLease(p, nova)
        case "preemptible.start":
            try await bootPreemptible(p, nova)
        case "preemptible.preempt":
            try await stopPreemptible(p, nova, mode: p["mode"]?.stringValue ?? "delete")
        case "preemptible.end":
            try await stopPreemptible(p, nova, mode: "delete")
        default:
            logger.debug("openstack adapter: nothing to do", metadata: ["action.kind": "\(a.kind)"])
        }
    }

    // MARK: - Leases

    struct ReservationPlan {
        var id: String
        var kind: String
        var hosts: [String]
        var vcpus: Int64?
        var memoryMB: Int64?
        var diskGB: Int64?
        var profile: String?
    }

    static func reservations(of p: [String: JSON]) -> [ReservationPlan] {
        var byID: [String: ReservationPlan] = [:]
        var order: [String] = []
        for r in p["reservations"]?.arrayValue ?? [] {
            guard let id = r["id"]?.stringValue else { continue }
            order.append(id)
            byID[id] = ReservationPlan(
                id: id, kind: r["kind"]?.stringValue ?? "host", hosts: [], vcpus: r["vcpus"]?.intValue,
                memoryMB: r["memory_mb"]?.intValue, diskGB: r["disk_gb"]?.intValue,
                profile: r["profile"]?.stringValue ?? r["gpu_profile"]?.stringValue)
        }
        for a in p["allocations"]?.arrayValue ?? [] {
            guard let rid = a["reservation_id"]?.stringValue, let host = a["host"]?.stringValue else { continue }
            if byID[rid] == nil {
                order.append(rid)
                byID[rid] = ReservationPlan(id: rid, kind: a["kind"]?.stringValue ?? "host", hosts: [])
            }
            if !byID[rid]!.hosts.contains(host) { byID[rid]!.hosts.append(host) }
        }
        return order.compactMap { byID[$0] }
    }

    static func aggregateName(_ reservationID: String) -> String { "berth-\(reservationID)" }

    func ensureLease(_ p: [String: JSON], _ nova: NovaClient) async throws(OpenStackError) {
        let lease = p["lease_id"]?.stringValue ?? ""
        let project = p["project_id"]?.stringValue ?? ""
        let plans = OpenStackAdapter.reservations(of: p)
        for r in plans {
            let agg = try await nova.ensureAggregate(name: OpenStackAdapter.aggregateName(r.id))
            guard let aid = agg["id"]?.intValue else { throw .pending("aggregate for \(r.id) has no id") }
            let wanted: [String: JSON] = [
                "reservation": .string(r.id), "berth_lease_id": .string(lease), "filter_tenant_id": .string(project),
            ]
            let have = agg["metadata"]?.objectValue ?? [:]
            if wanted.contains(where: { have[$0.key] != $0.value }) {
                try await nova.aggregateAction(aid, ["set_metadata": ["metadata": .object(wanted)]], accept: [])
            }
            let members = Set((agg["hosts"]?.arrayValue ?? []).compactMap(\.stringValue))
            for h in r.hosts where !members.contains(h) {
                try await nova.aggregateAction(aid, ["add_host": ["host": .string(h)]], accept: [409])
            }
            for h in members.subtracting(r.hosts).sorted() {
                try await nova.aggregateAction(aid, ["remove_host": ["host": .string(h)]], accept: [404])
            }
            if r.kind == "instance" || r.kind == "gpu" {
                try await ensureFlavor(r, lease: lease, project: project, nova)
            }
        }
        // Reservations an update removed: their aggregates (and flavors) go.
        let keep = Set(plans.map(\.id))
        for agg in try await nova.aggregates() {
            guard agg["metadata"]?["berth_lease_id"]?.stringValue == lease,
                let rid = agg["metadata"]?["reservation"]?.stringValue,
                !keep.contains(rid)
            else { continue }
            try await teardown(
                ReservationPlan(id: rid, kind: "instance", hosts: []), project: project, nova, deleteServers: true)
        }
    }

    func ensureFlavor(_ r: ReservationPlan, lease: String, project: String, _ nova: NovaClient)
        async throws(OpenStackError)
    {
        let s = settings
        if try await nova.flavor(r.id) == nil {
            let size =
                r.kind == "gpu"
                ? s.gpuFlavor : InstanceSize(vcpus: r.vcpus ?? 1, memoryMB: r.memoryMB ?? 512, diskGB: r.diskGB ?? 0)
            let body: JSON = [
                "flavor": [
                    "name": .string("berth-\(r.id)"), "id": .string(r.id), "vcpus": .int(size.vcpus),
                    "ram": .int(size.memoryMB), "disk": .int(size.diskGB), "os-flavor-access:is_public": false,
                    "description": .string("Berth lease \(lease), reservation \(r.id)"),
                ]
            ]
            _ = try await nova.call(.POST, "/flavors", body: body, accept: [409])
        }
        var specs: [String: JSON] = ["aggregate_instance_extra_specs:reservation": .string(r.id)]
        if let profile = r.profile { specs["resources:\(s.resourceClass(for: profile))"] = "1" }
        _ = try await nova.call(.POST, "/flavors/\(r.id)/os-extra_specs", body: ["extra_specs": .object(specs)])
        _ = try await nova.call(
            .POST, "/flavors/\(r.id)/action", body: ["addTenantAccess": ["tenant": .string(project)]], accept: [409])
    }

    func endLease(_ p: [String: JSON], _ nova: NovaClient) async throws(OpenStackError) {
        let project = p["project_id"]?.stringValue ?? ""
        for r in OpenStackAdapter.reservations(of: p) {
            try await teardown(r, project: project, nova, deleteServers: true)
        }
    }

    /// Deletes the reservation's servers (waiting until Nova has), then its aggregate and flavor.
    func teardown(_ r: ReservationPlan, project: String, _ nova: NovaClient, deleteServers: Bool)
        async throws(OpenStackError)
    {
        let aggregate = try await nova.aggregates().first {
            $0["name"]?.stringValue == OpenStackAdapter.aggregateName(r.id)
        }
        let hosts = r.hosts.isEmpty ? (aggregate?["hosts"]?.arrayValue ?? []).compactMap(\.stringValue) : r.hosts
        if deleteServers {
            var doomed: [String: JSON] = [:]
            // Servers booted with the reservation's flavor, and the project's servers on its hosts.
            for s in try await nova.servers([("flavor", r.id)]) { if let id = s["id"]?.stringValue { doomed[id] = s } }
            if r.kind == "host" {
                for h in hosts {
                    for s in try await nova.servers([("host", h), ("project_id", project)]) {
                        if let id = s["id"]?.stringValue { doomed[id] = s }
                    }
                }
            }
            try await deleteAndWait(Array(doomed.keys).sorted(), nova)
        }
        if let aggregate, let aid = aggregate["id"]?.intValue {
            for h in (aggregate["hosts"]?.arrayValue ?? []).compactMap(\.stringValue) {
                try await nova.aggregateAction(aid, ["remove_host": ["host": .string(h)]], accept: [404])
            }
            try await nova.deleteAggregate(aid)
        }
        if try await nova.flavor(r.id) != nil {
            _ = try await nova.call(
                .POST, "/flavors/\(r.id)/action", body: ["removeTenantAccess": ["tenant": .string(project)]],
                accept: [404])
            _ = try await nova.call(.DELETE, "/flavors/\(r.id)", accept: [404])
        }
    }

    func deleteAndWait(_ ids: [String], _ nova: NovaClient) async throws(OpenStackError) {
        guard !ids.isEmpty else { return }
        for id in ids { try await nova.deleteServer(id) }
        let deadline = ContinuousClock.now + .seconds(settings.deleteWait)
        var remaining = ids
        while !remaining.isEmpty {
            var still: [String] = []
            for id in remaining where try await nova.server(id) != nil { still.append(id) }
            remaining = still
            if remaining.isEmpty { break }
            if ContinuousClock.now >= deadline {
                throw .pending(
                    "Nova is still deleting \(remaining.count) server(s): \(remaining.prefix(5).joined(separator: ", "))"
                )
            }
            // Nova deletes asynchronously: poll its state (this is the cloud's pace, not a test's).
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    // MARK: - Preemptibles

    static func serverName(_ p: [String: JSON]) -> String {
        p["server"]?["name"]?.stringValue ?? "berth-preemptible-\(p["preemptible_id"]?.stringValue ?? "")"
    }

    func findPreemptible(_ p: [String: JSON], _ nova: NovaClient) async throws(OpenStackError) -> JSON? {
        let id = p["preemptible_id"]?.stringValue ?? ""
        let name = OpenStackAdapter.serverName(p)
        let escaped = NSRegularExpression.escapedPattern(for: name)
        return try await nova.servers([("name", "^\(escaped)$")]).first {
            $0["metadata"]?["berth_preemptible_id"]?.stringValue == id
        }
    }

    func bootPreemptible(_ p: [String: JSON], _ nova: NovaClient) async throws(OpenStackError) {
        guard case .object(var server)? = p["server"] else { return }  // the caller boots it itself
        if try await findPreemptible(p, nova) != nil { return }
        server["name"] = .string(OpenStackAdapter.serverName(p))
        server["host"] = p["host"]
        // `networks` is required from 2.37 on; without one given, Nova's "get me a network".
        if server["networks"] == nil { server["networks"] = "auto" }
        var metadata = server["metadata"]?.objectValue ?? [:]
        metadata["berth_preemptible_id"] = p["preemptible_id"]
        server["metadata"] = .object(metadata)
        _ = try await nova.call(.POST, "/servers", body: ["server": .object(server)])
    }

    func stopPreemptible(_ p: [String: JSON], _ nova: NovaClient, mode: String) async throws(OpenStackError) {
        guard let server = try await findPreemptible(p, nova), let id = server["id"]?.stringValue else { return }
        if mode == "shelve" {
            let status = server["status"]?.stringValue ?? ""
            if status.hasPrefix("SHELVED") { return }
            _ = try await nova.call(.POST, "/servers/\(id)/action", body: ["shelve": .null])
        } else {
            try await deleteAndWait([id], nova)
        }
    }

    // MARK: - Reconciliation

    /// Compares Berth's aggregates in Nova with `expected` (reservation id → hosts of leases that
    /// are active and owe no undelivered action); returns, and keeps for `system.health`, the
    /// differences found.
    public func reconcile(expected: [String: Set<String>]) async -> [String] {
        let generation = state.withLock { $0.generation }
        do throws(OpenStackError) {
            let c = try connection()
            let aggregates = try await c.nova.aggregates()
            note(nil, generation: generation)
            var drift: [String] = []
            var seen: Set<String> = []
            for a in aggregates {
                guard let name = a["name"]?.stringValue, name.hasPrefix("berth-") else { continue }
                let rid = String(name.dropFirst("berth-".count))
                seen.insert(rid)
                let hosts = Set((a["hosts"]?.arrayValue ?? []).compactMap(\.stringValue))
                guard let want = expected[rid] else { continue }  // pending, ending or already torn down
                if hosts != want {
                    drift.append(
                        "aggregate \(name) has hosts [\(hosts.sorted().joined(separator: ", "))], Berth expects [\(want.sorted().joined(separator: ", "))]"
                    )
                }
            }
            for (rid, hosts) in expected.sorted(by: { $0.key < $1.key }) where !seen.contains(rid) {
                drift.append(
                    "aggregate berth-\(rid) for hosts [\(hosts.sorted().joined(separator: ", "))] is missing in Nova")
            }
            state.withLock { $0.drift = drift }
            for d in drift { logger.warning("cloud drift", metadata: ["drift": "\(d)"]) }
            return drift
        } catch {
            note(error, generation: generation)
            return []
        }
    }
}
