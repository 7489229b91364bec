import BerthJSON

/// The life of a lease (and of each of its reservations).
public enum LeaseStatus: String, Sendable, CaseIterable {
    case pending, active, ended, deleted, error

    /// Leases in these states hold (or held) capacity in the calendar.
    public var occupiesCalendar: Bool { self == .pending || self == .active || self == .ended }
    public var isFinal: Bool { self == .ended || self == .deleted }
}

public enum ReservationKind: String, Sendable, CaseIterable {
    case host, gpu, instance
}

/// What a reservation asks for, as the contract's request object.
public struct ReservationRequest: Sendable, Hashable {
    public var kind: ReservationKind
    /// Hosts: `min`/`max` (a fixed `count` is min == max). GPU slices and instances: `count` in both.
    public var min: Int64
    public var max: Int64
    /// Whether the caller gave `count` (rather than `min`/`max`), so the request echoes as given.
    public var fixedCount: Bool
    public var properties: PropertyFilter
    public var profile: String?
    public var gpuModel: String?
    public var vcpus: Int64?
    public var memoryMB: Int64?
    public var diskGB: Int64?
    public var gpuProfile: String?
    public var affinity: String?
    /// The cloud flavor an instance reservation copied its size (and MIG slice) from, as the
    /// cloud showed it when the reservation was made; nil when the size was given directly.
    public var sourceFlavor: JSON?

    public init(hosts count: Int64, properties: PropertyFilter = .all) {
        kind = .host
        min = count
        max = count
        fixedCount = true
        self.properties = properties
    }

    public init(hostsMin: Int64, max: Int64, properties: PropertyFilter = .all) {
        kind = .host
        min = hostsMin
        self.max = max
        fixedCount = false
        self.properties = properties
    }

    /// Parses one element of `reservations`, collecting problems under `path`.
    public static func parse(_ json: JSON, path: String, errors: inout [BerthError.FieldError]) -> ReservationRequest? {
        parse(json, path: path, errors: &errors, ignoring: [])
    }

    /// `ignoring`: fields of a larger object (a stored reservation's status and allocations) that
    /// are not the request's, skipped rather than reported as unknown.
    static func parse(_ json: JSON, path: String, errors: inout [BerthError.FieldError], ignoring: [String])
        -> ReservationRequest?
    {
        var r = ParamReader(json, path: path)
        guard r.errors.isEmpty else {
            errors.append(contentsOf: r.errors)
            return nil
        }
        for k in ignoring { _ = r.raw(k) }
        let kind = r.enumValue("kind", ReservationKind.self, required: true)
        _ = r.raw("id")  // accepted on lease.update to name an existing reservation
        var properties = PropertyFilter.all
        if let p = r.raw("properties") {
            do throws(BerthError) {
                properties = try PropertyFilter(json: p, path: r.fieldPath("properties"))
            } catch {
                r.merge(error.fieldErrors)
            }
        }
        var req = ReservationRequest(hosts: 1, properties: properties)
        switch kind {
        case .host:
            let count = r.int("count", min: 1, max: 100_000)
            let lo = r.int("min", min: 1, max: 100_000)
            let hi = r.int("max", min: 1, max: 100_000)
            if r.has("count") && (r.has("min") || r.has("max")) {
                r.fail("count", "give either count or min/max, not both")
            } else if let count {
                req.min = count
                req.max = count
            } else if let lo, let hi {
                if lo > hi { r.fail("min", "min (\(lo)) must not exceed max (\(hi))") }
                req.min = lo
                req.max = hi
                req.fixedCount = false
            } else if !r.has("count") && !r.has("min") && !r.has("max") {
                r.fail("count", "is required (or min and max)")
            } else if r.has("min") != r.has("max") {
                r.fail(r.has("min") ? "max" : "min", "is required with \(r.has("min") ? "min" : "max")")
            }
        case .gpu:
            req.kind = .gpu
            req.profile = r.string("profile", required: true)
            if let c = r.int("count", required: true, min: 1, max: 100_000) {
                req.min = c
                req.max = c
            }
            req.gpuModel = r.string("gpu_model")
        case .instance:
            req.kind = .instance
            req.vcpus = r.int("vcpus", required: true, min: 1)
            req.memoryMB = r.int("memory_mb", required: true, min: 1)
            req.diskGB = r.int("disk_gb", required: true, min: 0)
            if let c = r.int("count", required: true, min: 1, max: 100_000) {
                req.min = c
                req.max = c
            }
            req.gpuProfile = r.string("gpu_profile")
            if let a = r.raw("affinity") {
                if let s = a.stringValue, s == "same_host" || s == "different_host" {
                    req.affinity = s
                } else {
                    r.fail("affinity", "must be \"same_host\", \"different_host\" or null")
                }
            }
            if let f = r.raw("source_flavor") {
                if case .object = f { req.sourceFlavor = f } else { r.fail("source_flavor", "must be an object") }
            }
        case nil:
            break
        }
        r.rejectUnknown()
        errors.append(contentsOf: r.errors)
        return r.errors.isEmpty && kind != nil ? req : nil
    }

    /// This request, still showing the flavor `old` was copied from when it asks for the same
    /// size (an update that changes only the count or properties of a flavor reservation).
    public func keepingSource(of old: ReservationRequest) -> ReservationRequest {
        guard sourceFlavor == nil, let source = old.sourceFlavor, kind == .instance, old.kind == .instance,
            vcpus == old.vcpus, memoryMB == old.memoryMB, diskGB == old.diskGB, gpuProfile == old.gpuProfile
        else { return self }
        var r = self
        r.sourceFlavor = source
        return r
    }

    public var json: JSON {
        var o: [String: JSON] = ["kind": .string(kind.rawValue)]
        switch kind {
        case .host:
            if fixedCount {
                o["count"] = .int(min)
            } else {
                o["min"] = .int(min)
                o["max"] = .int(max)
            }
        case .gpu:
            o["count"] = .int(min)
            o["profile"] = JSON(profile)
            if let gpuModel { o["gpu_model"] = .string(gpuModel) }
        case .instance:
            o["count"] = .int(min)
            o["vcpus"] = .int(vcpus ?? 0)
            o["memory_mb"] = .int(memoryMB ?? 0)
            o["disk_gb"] = .int(diskGB ?? 0)
            if let gpuProfile { o["gpu_profile"] = .string(gpuProfile) }
            o["affinity"] = JSON(affinity)
            if let sourceFlavor { o["source_flavor"] = sourceFlavor }
        }
        if properties != .all { o["properties"] = properties.json }
        return .object(o)
    }
}

extension BerthError {
    /// The field errors of an invalid-params error (or the message as one error at the root).
    public var fieldErrors: [FieldError] {
        if code == .invalidParams, let list = data["errors"]?.arrayValue {
            return list.map {
                FieldError(path: $0["path"]?.stringValue ?? "", message: $0["message"]?.stringValue ?? "")
            }
        }
        return [FieldError(path: "", message: message)]
    }
}

/// Where one unit of a reservation landed. Hosts use only `host`; GPU slices add gpu/profile/slot;
/// instance slots add `slots`.
public struct Allocation: Sendable, Hashable {
    public var host: String
    public var gpu: Int?
    public var profile: String?
    public var slot: Int?
    public var slots: Int?
    /// Memory slices a GPU allocation spans (kept so the calendar needs no model table).
    public var size: Int?

    public init(
        host: String, gpu: Int? = nil, profile: String? = nil, slot: Int? = nil, slots: Int? = nil, size: Int? = nil
    ) {
        self.host = host
        self.gpu = gpu
        self.profile = profile
        self.slot = slot
        self.slots = slots
        self.size = size
    }

    public var json: JSON { json(internal: false) }

    public func json(internal: Bool) -> JSON {
        var o: [String: JSON] = ["host": .string(host)]
        if let gpu { o["gpu"] = .int(Int64(gpu)) }
        if let profile { o["profile"] = .string(profile) }
        if let slot { o["slot"] = .int(Int64(slot)) }
        if let slots { o["slots"] = .int(Int64(slots)) }
        if `internal`, let size { o["size"] = .int(Int64(size)) }
        return .object(o)
    }

    public init?(json: JSON) {
        // One pass over the members instead of a hashed lookup per field: a restart decodes every
        // allocation, and most have only `host`.
        guard case .object(let o) = json else { return nil }
        var host: String?
        self.init(host: "")
        for (k, v) in o {
            switch k {
            case "host": host = v.stringValue
            case "gpu": gpu = v.intValue.map(Int.init)
            case "profile": profile = v.stringValue
            case "slot": slot = v.intValue.map(Int.init)
            case "slots": slots = v.intValue.map(Int.init)
            case "size": size = v.intValue.map(Int.init)
            default: break
            }
        }
        guard let host else { return nil }
        self.host = host
    }
}

public struct Reservation: Sendable, Hashable {
    public var id: String
    public var request: ReservationRequest
    public var status: LeaseStatus
    public var allocations: [Allocation]

    public init(id: String, request: ReservationRequest, status: LeaseStatus, allocations: [Allocation]) {
        self.id = id
        self.request = request
        self.status = status
        self.allocations = allocations
    }
}

/// A time window of reserved capacity for one project.
public struct Lease: Sendable, Hashable {
    public var id: String
    public var name: String
    public var projectID: String
    public var userID: String?
    public var start: Timestamp
    public var end: Timestamp
    public var beforeEndSeconds: Int64?
    public var status: LeaseStatus
    public var reservations: [Reservation]
    public var cost: [String: JSON]
    public var degraded: Bool
    public var degradedReason: String?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    /// Whether the before-end event has fired, so a restart never fires it twice.
    public var beforeEndFired: Bool

    public init(
        id: String, name: String, projectID: String, userID: String?, start: Timestamp, end: Timestamp,
        beforeEndSeconds: Int64?, status: LeaseStatus, reservations: [Reservation], createdAt: Timestamp
    ) {
        self.id = id
        self.name = name
        self.projectID = projectID
        self.userID = userID
        self.start = start
        self.end = end
        self.beforeEndSeconds = beforeEndSeconds
        self.status = status
        self.reservations = reservations
        self.cost = [:]
        self.degraded = false
        self.degradedReason = nil
        self.createdAt = createdAt
        self.updatedAt = createdAt
        self.beforeEndFired = false
    }

    public var window: Interval { Interval(start: start.seconds, end: end.seconds) }

    /// Every host any of its reservations holds.
    public var hostNames: Set<String> { Set(reservations.flatMap { $0.allocations.map(\.host) }) }

    /// When the before-end event is due, if the lease asked for one that falls inside the lease.
    public var beforeEndAt: Timestamp? {
        guard let s = beforeEndSeconds, s > 0 else { return nil }
        let t = end - s
        return t > start ? t : nil
    }

    /// The lease as the contract shows it; `internal` adds bookkeeping fields for the store.
    public func json(internal: Bool = false) -> JSON {
        var o: [String: JSON] = [
            "id": .string(id),
            "name": .string(name),
            "project_id": .string(projectID),
            "user_id": JSON(userID),
            "start": .string(start.rfc3339),
            "end": .string(end.rfc3339),
            "before_end_s": beforeEndSeconds.map { .int($0) } ?? .null,
            "status": .string(status.rawValue),
            "reservations": .array(
                reservations.map { r in
                    guard case .object(var ro) = r.request.json else { return .null }
                    ro["id"] = .string(r.id)
                    ro["status"] = .string(r.status.rawValue)
                    ro["allocations"] = .array(r.allocations.map { $0.json(internal: `internal`) })
                    // The private flavor the openstack adapter creates for it, for the portal to boot with.
                    if !`internal`, r.request.kind != .host { ro["flavor_id"] = .string(r.id) }
                    return .object(ro)
                }),
            "cost": .object(cost),
            "degraded": .bool(degraded),
            "degraded_reason": JSON(degradedReason),
            "created_at": .string(createdAt.rfc3339),
            "updated_at": .string(updatedAt.rfc3339),
        ]
        if `internal` { o["before_end_fired"] = .bool(beforeEndFired) }
        return .object(o)
    }

    /// A stored reservation's fields besides its request (`id` is accepted by the request itself).
    static let storedReservationFields = ["status", "allocations", "flavor_id"]

    /// Rebuilds a lease from the store's JSON (`json(internal: true)`).
    public init?(json: JSON) {
        guard let id = json["id"]?.stringValue, let name = json["name"]?.stringValue,
            let project = json["project_id"]?.stringValue,
            let start = json["start"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
            let end = json["end"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
            let status = json["status"]?.stringValue.flatMap(LeaseStatus.init(rawValue:)),
            let created = json["created_at"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
            let updated = json["updated_at"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
            let rs = json["reservations"]?.arrayValue
        else { return nil }
        var reservations: [Reservation] = []
        reservations.reserveCapacity(rs.count)
        for r in rs {
            guard case .object(let ro) = r, let rid = ro["id"]?.stringValue,
                let rstatus = ro["status"]?.stringValue.flatMap(LeaseStatus.init(rawValue:)),
                let allocs = ro["allocations"]?.arrayValue
            else { return nil }
            // The request is the rest of the object (`flavor_id` is derived, public shape only);
            // skipping those fields rather than removing them spares a copy of the dictionary.
            var errors: [BerthError.FieldError] = []
            guard
                let req = ReservationRequest.parse(
                    r, path: "", errors: &errors, ignoring: Lease.storedReservationFields)
            else { return nil }
            reservations.append(
                Reservation(
                    id: rid, request: req, status: rstatus, allocations: allocs.compactMap(Allocation.init(json:))))
        }
        self.init(
            id: id, name: name, projectID: project, userID: json["user_id"]?.stringValue, start: start, end: end,
            beforeEndSeconds: json["before_end_s"]?.intValue, status: status, reservations: reservations,
            createdAt: created)
        self.updatedAt = updated
        self.cost = json["cost"]?.objectValue ?? [:]
        self.degraded = json["degraded"]?.boolValue ?? false
        self.degradedReason = json["degraded_reason"]?.stringValue
        self.beforeEndFired = json["before_end_fired"]?.boolValue ?? false
    }
}
