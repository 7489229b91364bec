import BerthCore
import BerthJSON

/// A Berth lease (the contract's JSON) as Blazar shows it. Status names follow Blazar's
/// (`PENDING`, `ACTIVE`, `TERMINATED`, `ERROR`; reservations in lower case, an ended one
/// `deleted`); dates are Blazar's; Berth's own facts (`cost`, `allocations`, `degraded_reason`)
/// are extra members.
enum BlazarLeaseView {
    static func leaseStatus(_ berth: String?) -> String {
        switch berth {
        case "pending": return "PENDING"
        case "active": return "ACTIVE"
        case "ended": return "TERMINATED"
        case "deleted": return "DELETED"
        default: return "ERROR"
        }
    }

    static func reservationStatus(_ berth: String?) -> String {
        switch berth {
        case "pending": return "pending"
        case "active": return "active"
        case "ended", "deleted": return "deleted"
        default: return "error"
        }
    }

    /// The lease object of `{"lease": ...}`. `starting`: the lease has begun but the cloud has
    /// not yet been set up for it (its start action is still on its way), which Blazar calls
    /// `STARTING`: clients that wait for `ACTIVE` then find the reservation's flavor in Nova.
    static func lease(_ l: JSON, now: String, starting: Bool = false) -> JSON {
        let id = l["id"]?.stringValue ?? ""
        let status = l["status"]?.stringValue
        var o: [String: JSON] = [
            "id": .string(id),
            "name": l["name"] ?? .null,
            "start_date": BlazarDate.response(l["start"]?.stringValue),
            "end_date": BlazarDate.response(l["end"]?.stringValue),
            "status": .string(starting && status == "active" ? "STARTING" : leaseStatus(status)),
            "degraded": l["degraded"] ?? false,
            "user_id": l["user_id"] ?? .null,
            "project_id": l["project_id"] ?? .null,
            "trust_id": .null,
            "created_at": BlazarDate.record(l["created_at"]?.stringValue),
            "updated_at": BlazarDate.record(l["updated_at"]?.stringValue),
            "reservations": .array((l["reservations"]?.arrayValue ?? []).map { reservation($0, lease: l) }),
            "events": .array(events(l, now: now)),
            "cost": l["cost"] ?? .object([:]),
        ]
        if let reason = l["degraded_reason"], !reason.isNull { o["degraded_reason"] = reason }
        if let b = l["before_end_s"]?.intValue { o["before_end_s"] = .int(b) }
        return .object(o)
    }

    static func reservation(_ r: JSON, lease l: JSON) -> JSON {
        let id = r["id"]?.stringValue ?? ""
        var o: [String: JSON] = [
            "id": .string(id),
            "lease_id": l["id"] ?? .null,
            "resource_id": .string(id),
            "status": .string(reservationStatus(r["status"]?.stringValue)),
            "missing_resources": l["degraded"] ?? false,
            "resources_changed": false,
            "created_at": BlazarDate.record(l["created_at"]?.stringValue),
            "updated_at": BlazarDate.record(l["updated_at"]?.stringValue),
            "allocations": r["allocations"] ?? .array([]),
        ]
        let properties = BlazarPropertyExpression.string(r["properties"])
        switch r["kind"]?.stringValue {
        case "host":
            let lo = r["count"]?.intValue ?? r["min"]?.intValue ?? 1
            let hi = r["count"]?.intValue ?? r["max"]?.intValue ?? lo
            o["resource_type"] = "physical:host"
            o["min"] = .int(lo)
            o["max"] = .int(hi)
            o["hypervisor_properties"] = ""
            o["resource_properties"] = .string(properties)
            o["before_end"] = "default"
        case "instance":
            let source = r["source_flavor"]
            o["resource_type"] = source == nil ? "virtual:instance" : "flavor:instance"
            o["amount"] = r["count"] ?? 1
            o["vcpus"] = r["vcpus"] ?? .null
            o["memory_mb"] = r["memory_mb"] ?? .null
            o["disk_gb"] = r["disk_gb"] ?? .null
            switch r["affinity"]?.stringValue {
            case "same_host": o["affinity"] = true
            case "different_host": o["affinity"] = false
            default: o["affinity"] = .null
            }
            // A flavor reservation shows the flavor it copied, as JSON text, as Blazar does.
            o["resource_properties"] = .string(source.map { $0.serialized() } ?? properties)
            o["flavor_id"] = r["flavor_id"] ?? .string(id)
            o["aggregate_id"] = .null
            o["server_group_id"] = .null
            if let g = r["gpu_profile"], !g.isNull { o["gpu_profile"] = g }
        default:
            // GPU slices have no Blazar type: Berth's own, so that Blazar's clients can list them.
            o["resource_type"] = "berth:gpu"
            o["amount"] = r["count"] ?? 1
            o["profile"] = r["profile"] ?? .null
            if let m = r["gpu_model"] { o["gpu_model"] = m }
            o["resource_properties"] = .string(properties)
            o["flavor_id"] = r["flavor_id"] ?? .string(id)
        }
        return .object(o)
    }

    /// Blazar's lease events: start, before-end (when asked for) and end, each UNDONE until it
    /// has happened. Their ids are derived from the lease's, so they stay the same across calls.
    static func events(_ l: JSON, now: String) -> [JSON] {
        let id = l["id"]?.stringValue ?? ""
        let status = l["status"]?.stringValue ?? ""
        let started = status == "active" || status == "ended"
        let ended = status == "ended"
        func event(_ type: String, _ n: Int, _ at: String?, done: Bool) -> JSON {
            [
                "id": .string(derivedID(id, n)), "lease_id": .string(id), "event_type": .string(type),
                "time": BlazarDate.response(at),
                "status": .string(status == "error" ? "ERROR" : done ? "DONE" : "UNDONE"),
                "created_at": BlazarDate.record(l["created_at"]?.stringValue),
                "updated_at": BlazarDate.record(l["updated_at"]?.stringValue),
            ]
        }
        var out = [event("start_lease", 1, l["start"]?.stringValue, done: started)]
        if let b = l["before_end_s"]?.intValue, b > 0, let end = l["end"]?.stringValue,
            let at = Timestamp(rfc3339: end).map({ ($0 - b).rfc3339 })
        {
            out.append(event("before_end_lease", 2, at, done: ended || started && at <= now))
        }
        out.append(event("end_lease", 3, l["end"]?.stringValue, done: ended))
        return out
    }

    /// A UUID-shaped id that is the lease's with its last group replaced by the event number.
    static func derivedID(_ leaseID: String, _ n: Int) -> String {
        let groups = leaseID.split(separator: "-")
        guard groups.count == 5 else { return "\(leaseID)-\(n)" }
        let tail = String(n)
        let last = String(repeating: "0", count: max(0, 12 - tail.count)) + tail
        return groups[0..<4].joined(separator: "-") + "-" + last
    }
}
