import BerthCore
import BerthJSON

/// Capacity "in use" per reservation as the cloud reports it (an adapter capability): reservation
/// id → units running on it (hosts with a server, GPU instances with a server, instance slots
/// with a server). Called synchronously from the scheduler actor at each usage tick, so it must
/// answer from memory or a small local file, never from the network.
public typealias UsageSource = @Sendable () -> [String: Int64]

/// Cumulative reserved and used unit-seconds per project and reservation kind, advanced by the
/// scheduler's clock (each `processDue`, so `clock.advance` drives it deterministically).
struct UsageAccrual: Sendable {
    struct Key: Hashable, Sendable {
        var project: String
        var kind: String
    }
    var last: Timestamp? = nil
    var reservedSeconds: [Key: Int64] = [:]
    var usedSeconds: [Key: Int64] = [:]
}

/// One consistent view of the scheduler's state for the metrics exporter (taken in one actor turn).
public struct SchedulerMetricsSnapshot: Sendable {
    public struct CapacityKind: Sendable {
        public var total: Int64 = 0
        public var reserved: Int64 = 0
    }

    /// One active reservation: reserved units and (when the adapter reports usage) units in use.
    public struct ReservationUsage: Sendable {
        public var leaseID: String
        public var reservationID: String
        public var projectID: String
        public var kind: String
        public var reserved: Int64
        public var used: Int64?
    }

    public struct Credits: Sendable {
        public var project: String
        public var resourceClass: String
        public var granted: Double
        public var spent: Double
    }

    public var now: Timestamp
    public var leasesByStatus: [String: Int]
    /// `hosts`, `gpu_slices`, `vcpus`.
    public var capacity: [String: CapacityKind]
    public var preemptiblesByStatus: [String: Int]
    public var reservations: [ReservationUsage]
    public var usageReported: Bool
    /// (project, kind) → cumulative unit-hours.
    public var reservedHours: [(project: String, kind: String, hours: Double)]
    public var usedHours: [(project: String, kind: String, hours: Double)]
    public var credits: [Credits]
}

extension Scheduler {
    /// Sets where usage comes from (nil: the adapter does not report it; used metrics are absent).
    public func setUsageSource(_ source: UsageSource?) { usageSource = source }

    /// Units a reservation holds: hosts, GPU instances, or instance slots.
    static func reservedUnits(_ r: Reservation) -> Int64 {
        switch r.request.kind {
        case .host, .gpu: return Int64(r.allocations.count)
        case .instance: return r.allocations.reduce(0) { $0 + Int64($1.slots ?? 1) }
        }
    }

    /// Adds reserved and used unit-seconds for `[last, t)` with the leases active now; called
    /// before each lifecycle transition (so a lease counts exactly from its start to its end)
    /// and at the end of `processDue`.
    func accrueUsage(upTo t: Timestamp) {
        guard let last = state.usage.last else {
            state.usage.last = t
            return
        }
        guard t > last else { return }
        state.usage.last = t
        let seconds = t.seconds - last.seconds
        let usage = usageSource?()
        for l in state.leases.values where l.status == .active {
            for r in l.reservations where r.status == .active {
                let key = UsageAccrual.Key(project: l.projectID, kind: r.request.kind.rawValue)
                let units = Scheduler.reservedUnits(r)
                state.usage.reservedSeconds[key, default: 0] += units * seconds
                if let usage {
                    let used = min(max(usage[r.id] ?? 0, 0), units)
                    state.usage.usedSeconds[key, default: 0] += used * seconds
                }
            }
        }
    }

    public func metricsSnapshot() -> SchedulerMetricsSnapshot {
        let now = clock.now()
        accrueUsage(upTo: now)
        var byStatus: [String: Int] = [:]
        for s in LeaseStatus.allCases { byStatus[s.rawValue] = 0 }
        for l in state.leases.values { byStatus[l.status.rawValue, default: 0] += 1 }

        var capacity: [String: SchedulerMetricsSnapshot.CapacityKind] = [
            "hosts": .init(), "gpu_slices": .init(), "vcpus": .init(),
        ]
        let instant = Interval(start: now.seconds, end: now.seconds + 1)
        for h in state.sortedHosts where h.isSchedulable {
            let slices = Int64(h.gpus.reduce(0) { $0 + (models.model(named: $1.model)?.memorySlices ?? 1) })
            capacity["hosts"]!.total += 1
            capacity["gpu_slices"]!.total += slices
            capacity["vcpus"]!.total += h.vcpus
            var whole = false
            var anyReserved = false
            var reservedSlices: Int64 = 0
            var reservedVCPUs: Int64 = 0
            for (_, e) in state.calendar.entries(host: h.name, overlapping: instant) where !e.isPreemptible {
                guard let l = state.leases[e.leaseID], l.status == .active || l.status == .pending else { continue }
                anyReserved = true
                switch e.usage {
                case .wholeHost: whole = true
                case .gpuSlices(_, _, let size, _): reservedSlices += Int64(size)
                case .instances(let count, let vcpus, _, _): reservedVCPUs += count * vcpus
                }
            }
            if anyReserved { capacity["hosts"]!.reserved += 1 }
            capacity["gpu_slices"]!.reserved += whole ? slices : min(reservedSlices, slices)
            capacity["vcpus"]!.reserved += whole ? h.vcpus : min(reservedVCPUs, h.vcpus)
        }

        var preemptibleStatus: [String: Int] = [:]
        for s in PreemptibleStatus.allCases { preemptibleStatus[s.rawValue] = 0 }
        for p in state.preemptibles.values { preemptibleStatus[p.status.rawValue, default: 0] += 1 }

        let usage = usageSource?()
        var reservations: [SchedulerMetricsSnapshot.ReservationUsage] = []
        for l in state.leases.values where l.status == .active {
            for r in l.reservations where r.status == .active {
                let units = Scheduler.reservedUnits(r)
                reservations.append(
                    .init(
                        leaseID: l.id, reservationID: r.id, projectID: l.projectID, kind: r.request.kind.rawValue,
                        reserved: units, used: usage.map { min(max($0[r.id] ?? 0, 0), units) }))
            }
        }

        var credits: [SchedulerMetricsSnapshot.Credits] = []
        let projects = Set(state.ledger.entries.map(\.projectID))
        for p in projects.sorted() {
            for (c, b) in state.ledger.balance(project: p, now: now) {
                credits.append(
                    .init(
                        project: p, resourceClass: c.rawValue, granted: Double(b.granted.micro) / 1e6,
                        spent: Double(b.spent.micro) / 1e6))
            }
        }
        func hours(_ m: [UsageAccrual.Key: Int64]) -> [(project: String, kind: String, hours: Double)] {
            m.map { (project: $0.key.project, kind: $0.key.kind, hours: Double($0.value) / 3600) }
        }
        return SchedulerMetricsSnapshot(
            now: now, leasesByStatus: byStatus, capacity: capacity, preemptiblesByStatus: preemptibleStatus,
            reservations: reservations, usageReported: usageSource != nil,
            reservedHours: hours(state.usage.reservedSeconds), usedHours: hours(state.usage.usedSeconds),
            credits: credits)
    }
}

extension Scheduler {
    /// Active reservations with their project, kind and hosts (the OpenStack adapter counts the
    /// servers running on them for the efficiency metrics).
    public func activeReservationsForUsage() -> [(
        reservationID: String, projectID: String, kind: String, hosts: [String]
    )] {
        var out: [(reservationID: String, projectID: String, kind: String, hosts: [String])] = []
        for l in state.leases.values where l.status == .active {
            for r in l.reservations where r.status == .active {
                out.append((r.id, l.projectID, r.request.kind.rawValue, Array(Set(r.allocations.map(\.host))).sorted()))
            }
        }
        return out
    }
}
