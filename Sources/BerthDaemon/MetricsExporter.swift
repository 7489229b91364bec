import BerthService
import BerthStore
import Prometheus
import Synchronization

/// Turns the scheduler's metrics snapshot (and the outbox's counts) into Prometheus series.
///
/// Gauges that describe the state now are set from one snapshot per scrape; series whose label
/// set disappeared (a lease that ended, a project with no active reservation) are unregistered,
/// so per-lease labels exist only while the lease is active. RPC request counters and latency
/// histograms are written by `RPCMetrics` into the same registry as requests are served.
final class MetricsExporter: Sendable {
    let registry: PrometheusCollectorRegistry
    let scheduler: Scheduler
    let store: BerthStore
    /// The JSON-RPC server's open connections and limit counts (nil in tests without a server).
    let connections: (@Sendable () -> (open: Int, closedByLimit: [String: Int]))?

    /// Dynamic series registered by the previous scrape, per family, keyed by their label values.
    private struct Series: ~Copyable {
        var gauges: [String: [[String]: Gauge]] = [:]
        var counters: [String: [[String]: Counter]] = [:]
    }
    private let series = Mutex(Series())

    init(
        registry: PrometheusCollectorRegistry, scheduler: Scheduler, store: BerthStore,
        connections: (@Sendable () -> (open: Int, closedByLimit: [String: Int]))? = nil
    ) {
        self.registry = registry
        self.scheduler = scheduler
        self.store = store
        self.connections = connections
    }

    /// The limits `berth_rpc_connections_limited_total` reports, so each series exists from the start.
    static let connectionLimitKeys = [
        "max_connections", "max_connections_per_uid", "idle_timeout_s", "request_timeout_s", "write_timeout_s",
    ]

    /// Every metric family: name → (type, label names, help). docs/operations-metrics.md lists the same.
    static let help: [String: String] = [
        "berth_leases": "Leases by status.",
        "berth_capacity_total":
            "Capacity of schedulable (reservable, up) hosts by kind: hosts, gpu_slices (memory slices), vcpus.",
        "berth_capacity_reserved": "Capacity held by pending or active leases at this instant, by kind.",
        "berth_capacity_free": "Capacity not held by any lease at this instant, by kind (total - reserved).",
        "berth_preemptibles": "Preemptible instances by status.",
        "berth_preemptibles_live": "Preemptible instances still holding capacity (pending, running, preempting).",
        "berth_preemptions_executed_total": "Preemptible instances preempted.",
        "berth_outbox_actions": "Outbound actions by status (pending is the outbox depth).",
        "berth_outbox_retries_total": "Delivery attempts beyond the first, over all actions.",
        "berth_outbox_failed_total": "Actions that failed for good (after retries or a permanent refusal).",
        "berth_credits_granted": "Credits granted per project and resource class (grants plus adjustments).",
        "berth_credits_spent": "Credits spent per project and resource class (charges minus refunds).",
        "berth_reservation_reserved_units":
            "Units an active reservation holds: hosts, GPU instances or instance slots.",
        "berth_reservation_used_units":
            "Units of an active reservation in use (servers running on it, as the adapter reports).",
        "berth_reservation_efficiency_ratio": "Used units / reserved units of an active reservation.",
        "berth_project_reserved_units": "Units held by a project's active reservations, by kind.",
        "berth_project_used_units": "Units of a project's active reservations in use, by kind.",
        "berth_reserved_unit_hours_total": "Cumulative reserved unit-hours per project and kind (scheduler clock).",
        "berth_used_unit_hours_total": "Cumulative used unit-hours per project and kind (scheduler clock).",
        "berth_usage_reported": "1 when the adapter reports usage (the used-unit series exist), else 0.",
        "berth_storage_healthy": "1 while writes reach the database, 0 from a failed commit until one succeeds.",
        "berth_storage_failed_commits_total":
            "Group commits the database refused (disk full, read-only, I/O error, locked).",
        "berth_rpc_connections": "JSON-RPC connections open now.",
        "berth_rpc_connections_limited_total":
            "JSON-RPC connections refused (max_connections, max_connections_per_uid) or closed (idle_timeout_s, request_timeout_s, write_timeout_s) by a resource limit, by limit.",
    ]

    static func descriptor(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help[name] ?? "")
    }

    /// One scrape: fresh snapshot, series updated, the whole registry as Prometheus text.
    func scrape() async -> [UInt8] {
        let snap = await scheduler.metricsSnapshot()
        let outbox = try? store.actionStats()
        return series.withLock { s in
            var gauges: [String: [[String]: Double]] = [:]
            var counters: [String: [[String]: Double]] = [:]
            func g(_ name: String, _ labels: [String], _ v: Double) { gauges[name, default: [:]][labels] = v }
            func c(_ name: String, _ labels: [String], _ v: Double) { counters[name, default: [:]][labels] = v }

            for (status, n) in snap.leasesByStatus { g("berth_leases", [status], Double(n)) }
            for (kind, cap) in snap.capacity {
                g("berth_capacity_total", [kind], Double(cap.total))
                g("berth_capacity_reserved", [kind], Double(cap.reserved))
                g("berth_capacity_free", [kind], Double(cap.total - cap.reserved))
            }
            var live = 0
            for (status, n) in snap.preemptiblesByStatus {
                g("berth_preemptibles", [status], Double(n))
                if ["pending", "running", "preempting"].contains(status) { live += n }
            }
            g("berth_preemptibles_live", [], Double(live))
            c("berth_preemptions_executed_total", [], Double(snap.preemptiblesByStatus["preempted"] ?? 0))
            if let outbox {
                for status in ["pending", "running", "done", "failed"] {
                    g("berth_outbox_actions", [status], Double(outbox.byStatus[status] ?? 0))
                }
                c("berth_outbox_retries_total", [], Double(outbox.retries))
                c("berth_outbox_failed_total", [], Double(outbox.byStatus["failed"] ?? 0))
            }
            for cr in snap.credits {
                g("berth_credits_granted", [cr.project, cr.resourceClass], cr.granted)
                g("berth_credits_spent", [cr.project, cr.resourceClass], cr.spent)
            }
            g("berth_usage_reported", [], snap.usageReported ? 1 : 0)
            g("berth_storage_healthy", [], scheduler.storageFault == nil ? 1 : 0)
            c("berth_storage_failed_commits_total", [], Double(scheduler.failedCommits))
            if let (open, limited) = connections?() {
                g("berth_rpc_connections", [], Double(open))
                for key in Self.connectionLimitKeys {
                    c("berth_rpc_connections_limited_total", [key], Double(limited[key] ?? 0))
                }
            }
            var projectReserved: [[String]: Double] = [:]
            var projectUsed: [[String]: Double] = [:]
            for r in snap.reservations {
                let labels = [r.leaseID, r.reservationID, r.projectID, r.kind]
                g("berth_reservation_reserved_units", labels, Double(r.reserved))
                projectReserved[[r.projectID, r.kind], default: 0] += Double(r.reserved)
                if let used = r.used {
                    g("berth_reservation_used_units", labels, Double(used))
                    if r.reserved > 0 {
                        g("berth_reservation_efficiency_ratio", labels, Double(used) / Double(r.reserved))
                    }
                    projectUsed[[r.projectID, r.kind], default: 0] += Double(used)
                }
            }
            for (k, v) in projectReserved { g("berth_project_reserved_units", k, v) }
            for (k, v) in projectUsed { g("berth_project_used_units", k, v) }
            for h in snap.reservedHours { c("berth_reserved_unit_hours_total", [h.project, h.kind], h.hours) }
            for h in snap.usedHours { c("berth_used_unit_hours_total", [h.project, h.kind], h.hours) }

            // Register what is new, set every value, drop what disappeared.
            for (name, values) in gauges {
                let names = MetricsExporter.labelNames[name] ?? []
                var fam = s.gauges[name] ?? [:]
                for (labels, v) in values {
                    let gauge =
                        fam[labels]
                        ?? registry.makeGauge(
                            descriptor: MetricsExporter.descriptor(name), labels: Array(zip(names, labels)))
                    gauge.set(v)
                    fam[labels] = gauge
                }
                for (labels, gauge) in fam where values[labels] == nil {
                    registry.unregisterGauge(gauge)
                    fam[labels] = nil
                }
                s.gauges[name] = fam
            }
            for (name, fam) in s.gauges where gauges[name] == nil {
                for gauge in fam.values { registry.unregisterGauge(gauge) }
                s.gauges[name] = nil
            }
            for (name, values) in counters {
                let names = MetricsExporter.labelNames[name] ?? []
                var fam = s.counters[name] ?? [:]
                for (labels, v) in values {
                    let counter =
                        fam[labels]
                        ?? registry.makeCounter(
                            descriptor: MetricsExporter.descriptor(name), labels: Array(zip(names, labels)))
                    // Absolute totals kept by the scheduler and the store: written, not added to.
                    counter.reset()
                    counter.increment(by: v)
                    fam[labels] = counter
                }
                s.counters[name] = fam
            }
            return registry.emitToBuffer()
        }
    }

    static let labelNames: [String: [String]] = [
        "berth_leases": ["status"],
        "berth_rpc_connections_limited_total": ["limit"],
        "berth_capacity_total": ["kind"], "berth_capacity_reserved": ["kind"], "berth_capacity_free": ["kind"],
        "berth_preemptibles": ["status"],
        "berth_outbox_actions": ["status"],
        "berth_credits_granted": ["project_id", "resource_class"],
        "berth_credits_spent": ["project_id", "resource_class"],
        "berth_reservation_reserved_units": ["lease_id", "reservation_id", "project_id", "kind"],
        "berth_reservation_used_units": ["lease_id", "reservation_id", "project_id", "kind"],
        "berth_reservation_efficiency_ratio": ["lease_id", "reservation_id", "project_id", "kind"],
        "berth_project_reserved_units": ["project_id", "kind"], "berth_project_used_units": ["project_id", "kind"],
        "berth_reserved_unit_hours_total": ["project_id", "kind"],
        "berth_used_unit_hours_total": ["project_id", "kind"],
    ]
}
