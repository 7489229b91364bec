import BerthJSON

/// Where a preemptible stands.
///
/// `running` from creation; `preempting` once a reservation needs its capacity and a preemption
/// time is fixed (`preempt_at`); `preempted` once that time has come; `ended` when deleted by its
/// owner. `pending` is reserved for adapters that report boot progress (the simulator does not).
public enum PreemptibleStatus: String, Sendable, CaseIterable {
    case pending, running, preempting, preempted, ended

    /// Still holds its capacity.
    public var isLive: Bool { self == .pending || self == .running || self == .preempting }
}

/// An instance that backfills capacity no reservation holds, guaranteed to run until
/// `guaranteedUntil` and preempted only after that, when a reservation needs what it occupies.
///
/// It lives in the same calendar as reservations (`LeaseCalendar.preemptibleEntries`): hard before
/// `guaranteedUntil`, soft after it.
public struct Preemptible: Sendable, Hashable {
    public var id: String
    public var projectID: String
    public var size: InstanceSize
    /// A MIG profile: the instance also holds one slice of it on `gpu` at `slot` (size `sliceSize`).
    public var gpuProfile: String?
    public var gpu: Int?
    public var slot: Int?
    public var sliceSize: Int?
    public var minLifetime: Int64
    /// Nova boot fields, passed through to the adapter.
    public var server: JSON?
    public var slurmNode: String?
    public var host: String
    public var status: PreemptibleStatus
    public var createdAt: Timestamp
    public var guaranteedUntil: Timestamp
    /// When it is (or was) preempted; set as soon as a reservation needs its capacity.
    public var preemptAt: Timestamp?
    /// When the reservation that preempts it takes the capacity, and which lease that is.
    public var neededAt: Timestamp?
    public var neededBy: String?
    /// When it stopped holding capacity (preempted or deleted).
    public var endedAt: Timestamp?
    public var updatedAt: Timestamp

    public init(
        id: String, projectID: String, size: InstanceSize, gpuProfile: String? = nil, gpu: Int? = nil, slot: Int? = nil,
        sliceSize: Int? = nil, minLifetime: Int64, server: JSON? = nil, slurmNode: String? = nil, host: String,
        status: PreemptibleStatus = .running, createdAt: Timestamp
    ) {
        self.id = id
        self.projectID = projectID
        self.size = size
        self.gpuProfile = gpuProfile
        self.gpu = gpu
        self.slot = slot
        self.sliceSize = sliceSize
        self.minLifetime = minLifetime
        self.server = server
        self.slurmNode = slurmNode
        self.host = host
        self.status = status
        self.createdAt = createdAt
        self.guaranteedUntil = createdAt + minLifetime
        self.updatedAt = createdAt
    }

    /// The instant it stops occupying its host: ended, else the planned preemption, else never.
    public var occupiedUntil: Int64 {
        endedAt?.seconds ?? preemptAt?.seconds ?? LeaseCalendar.openEnd
    }

    /// The calendar entries it holds: its share of the host, and its GPU slice if it has one.
    public var calendarEntries: [CalendarEntry] {
        var out = [
            CalendarEntry(
                leaseID: "", reservationID: id,
                usage: .instances(count: 1, vcpus: size.vcpus, memoryMB: size.memoryMB, diskGB: size.diskGB),
                guaranteedUntil: guaranteedUntil.seconds)
        ]
        if let gpu, let slot {
            out.append(
                CalendarEntry(
                    leaseID: "", reservationID: id,
                    usage: .gpuSlices(
                        gpu: gpu, slot: slot, size: sliceSize ?? 1, mediaExtensions: (gpuProfile ?? "").hasSuffix("+me")
                    ),
                    guaranteedUntil: guaranteedUntil.seconds))
        }
        return out
    }

    /// The calendar interval, nil when it never held capacity (ended in the second it was created).
    public var interval: Interval? {
        occupiedUntil > createdAt.seconds ? Interval(start: createdAt.seconds, end: occupiedUntil) : nil
    }

    /// The contract's shape (`schemas/components/Preemptible.json`); `internal` adds what only the
    /// store needs (server fields, slice geometry).
    public func json(internal full: Bool = false) -> JSON {
        var o: [String: JSON] = [
            "id": .string(id), "host": .string(host), "guaranteed_until": .string(guaranteedUntil.rfc3339),
            "status": .string(status.rawValue), "project_id": .string(projectID), "vcpus": .int(size.vcpus),
            "memory_mb": .int(size.memoryMB), "disk_gb": .int(size.diskGB), "gpu_profile": JSON(gpuProfile),
            "min_lifetime_s": .int(minLifetime), "slurm_node": JSON(slurmNode),
            "created_at": .string(createdAt.rfc3339),
            "preempt_at": preemptAt.map { .string($0.rfc3339) } ?? .null,
            "needed_at": neededAt.map { .string($0.rfc3339) } ?? .null,
            "needed_by_lease_id": JSON(neededBy),
            "ended_at": endedAt.map { .string($0.rfc3339) } ?? .null,
            "updated_at": .string(updatedAt.rfc3339),
        ]
        if let gpu, let slot {
            o["gpu"] = .int(Int64(gpu))
            o["slot"] = .int(Int64(slot))
            if full { o["slice_size"] = .int(Int64(sliceSize ?? 1)) }
        }
        if full, let server { o["server"] = server }
        return .object(o)
    }

    public init?(json: JSON) {
        func ts(_ k: String) -> Timestamp? { json[k]?.stringValue.flatMap(Timestamp.init(rfc3339:)) }
        guard let id = json["id"]?.stringValue, let project = json["project_id"]?.stringValue,
            let host = json["host"]?.stringValue, let vcpus = json["vcpus"]?.intValue,
            let mem = json["memory_mb"]?.intValue, let disk = json["disk_gb"]?.intValue,
            let status = json["status"]?.stringValue.flatMap(PreemptibleStatus.init(rawValue:)),
            let minLifetime = json["min_lifetime_s"]?.intValue, let created = ts("created_at"),
            let guaranteed = ts("guaranteed_until")
        else { return nil }
        self.init(
            id: id, projectID: project, size: InstanceSize(vcpus: vcpus, memoryMB: mem, diskGB: disk),
            gpuProfile: json["gpu_profile"]?.stringValue, gpu: json["gpu"]?.intValue.map(Int.init),
            slot: json["slot"]?.intValue.map(Int.init), sliceSize: json["slice_size"]?.intValue.map(Int.init),
            minLifetime: minLifetime, server: json["server"].flatMap { $0.isNull ? nil : $0 },
            slurmNode: json["slurm_node"]?.stringValue, host: host,
            status: status, createdAt: created)
        guaranteedUntil = guaranteed
        preemptAt = ts("preempt_at")
        neededAt = ts("needed_at")
        neededBy = json["needed_by_lease_id"]?.stringValue
        endedAt = ts("ended_at")
        updatedAt = ts("updated_at") ?? created
    }
}
