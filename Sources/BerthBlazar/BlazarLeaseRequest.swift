import BerthCore
import BerthJSON

/// Blazar's lease bodies (`POST /v1/leases`, `PUT /v1/leases/{id}`) as the contract's
/// `lease.create` and `lease.update` params, with Blazar's checks and messages for the mistakes
/// its clients know (missing parameters, invalid dates, end before start, min/max); everything
/// else is the scheduler's to judge, as over JSON-RPC.
enum BlazarLeaseRequest {
    /// `lease.create` params for `caller`'s project. `now` is the scheduler's clock.
    static func create(_ body: JSON, caller: BlazarCaller, now: Timestamp) throws(BlazarError) -> JSON {
        guard case .object(let b) = body else { throw BlazarError(400, "The request body must be a JSON object") }
        let missing = ["name", "start_date", "end_date"].filter { b[$0] == nil || b[$0]!.isNull }
        if !missing.isEmpty { throw BlazarError.missing(missing) }
        guard let name = b["name"]?.stringValue, !name.isEmpty else { throw BlazarError.malformed("name") }
        if name.count > 80 { throw BlazarError.malformed("name", "at most 80 characters") }
        let minute = Timestamp(seconds: now.seconds - ((now.seconds % 60) + 60) % 60)
        let startNow = b["start_date"]?.stringValue == "now"
        let start = startNow ? minute : try BlazarDate.parseRequest(b["start_date"], field: "start_date")!
        let end = try BlazarDate.parseRequest(b["end_date"], field: "end_date")!
        if !startNow && start < minute { throw BlazarError(400, "Start date must be later than current date") }
        if end <= start { throw BlazarError(400, "End date must be later than start date.") }
        var p: [String: JSON] = [
            "name": .string(name), "project_id": .string(caller.projectID), "user_id": .string(caller.userID),
            "start": startNow ? "now" : .string(start.rfc3339), "end": .string(end.rfc3339),
        ]
        if let beforeEnd = try BlazarDate.parseRequest(b["before_end_date"], field: "before_end_date") {
            guard beforeEnd > start && beforeEnd < end else {
                throw BlazarError(403, "Datetime is out of lease limits")
            }
            p["before_end_s"] = .int(end - beforeEnd)
        }
        guard let list = b["reservations"], !list.isNull else {
            throw BlazarError(
                400, "A Berth lease needs at least one reservation", extra: ["berth_rule": "reservations"])
        }
        guard case .array(let rs) = list else { throw BlazarError.malformed("reservations") }
        var out: [JSON] = []
        for r in rs { out.append(try reservation(r)) }
        p["reservations"] = .array(out)
        return .object(p)
    }

    /// One of Blazar's reservation requests as a Berth one.
    static func reservation(_ r: JSON) throws(BlazarError) -> JSON {
        guard case .object(let o) = r else { throw BlazarError.malformed("reservations") }
        guard let type = o["resource_type"]?.stringValue else { throw BlazarError.missing(["resource_type"]) }
        switch type {
        case "physical:host":
            let missing = ["min", "max"].filter { o[$0] == nil }
            if !missing.isEmpty { throw BlazarError.missing(missing) }
            let lo = try integer(o["min"], "min")
            let hi = try integer(o["max"], "max")
            if lo < 1 || hi < 1 {
                throw BlazarError(400, "Malformed parameter min and max (must be greater than or equal to 1)")
            }
            if hi < lo {
                throw BlazarError(
                    400, "Invalid values for min/max of hosts. Max must be equal to or larger than min.")
            }
            if let be = o["before_end"], !be.isNull, !["", "default", "snapshot"].contains(be.stringValue ?? "?") {
                throw BlazarError.malformed("before_end")
            }
            var h: [String: JSON] = ["kind": "host"]
            if lo == hi {
                h["count"] = .int(lo)
            } else {
                h["min"] = .int(lo)
                h["max"] = .int(hi)
            }
            if let f = try BlazarPropertyExpression.filter(
                hypervisor: o["hypervisor_properties"], resource: o["resource_properties"])
            {
                h["properties"] = f
            }
            return .object(h)
        case "virtual:instance":
            let missing = ["amount", "vcpus", "memory_mb", "disk_gb"].filter { o[$0] == nil }
            if !missing.isEmpty { throw BlazarError(400, "Missing parameter \(missing.joined(separator: ","))") }
            var i: [String: JSON] = [
                "kind": "instance", "count": .int(try integer(o["amount"], "amount")),
                "vcpus": .int(try integer(o["vcpus"], "vcpus")),
                "memory_mb": .int(try integer(o["memory_mb"], "memory_mb")),
                "disk_gb": .int(try integer(o["disk_gb"], "disk_gb")),
                "affinity": try affinity(o["affinity"]),
            ]
            if let f = try BlazarPropertyExpression.filter(hypervisor: nil, resource: o["resource_properties"]) {
                i["properties"] = f
            }
            return .object(i)
        case "flavor:instance":
            let missing = ["amount", "flavor_id"].filter { o[$0] == nil }
            if !missing.isEmpty { throw BlazarError(400, "Missing parameter \(missing.joined(separator: ","))") }
            guard let flavor = o["flavor_id"]?.stringValue, !flavor.isEmpty else {
                throw BlazarError.malformed("flavor_id")
            }
            return [
                "kind": "instance", "count": .int(try integer(o["amount"], "amount")), "flavor_id": .string(flavor),
                "affinity": try affinity(o["affinity"]),
            ]
        case "berth:gpu":
            guard let profile = o["profile"]?.stringValue else { throw BlazarError.missing(["profile"]) }
            var g: [String: JSON] = [
                "kind": "gpu", "profile": .string(profile), "count": .int(try integer(o["amount"] ?? 1, "amount")),
            ]
            if let m = o["gpu_model"]?.stringValue { g["gpu_model"] = .string(m) }
            if let f = try BlazarPropertyExpression.filter(hypervisor: nil, resource: o["resource_properties"]) {
                g["properties"] = f
            }
            return .object(g)
        default:
            throw BlazarError(400, "The \(type) resource type is not supported")
        }
    }

    /// Blazar's clients send numbers as JSON numbers or as strings ("min=1" on the CLI).
    static func integer(_ v: JSON?, _ name: String) throws(BlazarError) -> Int64 {
        if let i = v?.intValue { return i }
        if let s = v?.stringValue, let i = Int64(s.trimmingCharacters(in: .whitespaces)) { return i }
        throw BlazarError.malformed(name)
    }

    /// Blazar's `affinity`: true (same host), false (different hosts), null or absent (either).
    static func affinity(_ v: JSON?) throws(BlazarError) -> JSON {
        switch v {
        case nil, .null?: return .null
        case .bool(true)?: return "same_host"
        case .bool(false)?: return "different_host"
        case .string(let s)?:
            switch s.lowercased() {
            case "true", "yes", "1": return "same_host"
            case "false", "no", "0": return "different_host"
            case "none", "null", "": return .null
            default: throw BlazarError.malformed("affinity")
            }
        default: throw BlazarError.malformed("affinity")
        }
    }

    /// `lease.update` params from a PUT body, given the lease as it stands (Berth's JSON).
    /// Reservations named by `id` take the fields given; the others stay as they are.
    static func update(_ body: JSON, lease: JSON, now: Timestamp) throws(BlazarError) -> JSON {
        guard case .object(let b) = body else { throw BlazarError(400, "The request body must be a JSON object") }
        let id = lease["id"]?.stringValue ?? ""
        var p: [String: JSON] = ["id": .string(id)]
        if let n = b["name"], !n.isNull {
            guard let s = n.stringValue, !s.isEmpty, s.count <= 80 else { throw BlazarError.malformed("name") }
            p["name"] = .string(s)
        }
        let oldStart = lease["start"]?.stringValue.flatMap(Timestamp.init(rfc3339:)) ?? now
        let oldEnd = lease["end"]?.stringValue.flatMap(Timestamp.init(rfc3339:)) ?? now
        var start = oldStart
        var end = oldEnd
        let minute = Timestamp(seconds: now.seconds - ((now.seconds % 60) + 60) % 60)
        let status = lease["status"]?.stringValue
        if let s = b["start_date"], !s.isNull {
            start = s.stringValue == "now" ? now : try BlazarDate.parseRequest(s, field: "start_date")!
            if start != oldStart {
                if status == "active" || status == "ended" {
                    throw BlazarError(400, "Cannot modify the start date of already started leases")
                }
                if start < minute { throw BlazarError(400, "Start date must be later than current date") }
            }
            p["start"] = .string(start.rfc3339)
        }
        if let e = b["end_date"], !e.isNull {
            end = try BlazarDate.parseRequest(e, field: "end_date")!
            p["end"] = .string(end.rfc3339)
        }
        // Blazar's own update fields, which some clients send instead of dates.
        for (field, sign, moveStart, moveEnd) in [
            ("prolong_for", 1, false, true), ("reduce_by", -1, false, true), ("defer_by", 1, true, true),
            ("advance_by", -1, true, true),
        ] {
            guard let v = b[field], !v.isNull else { continue }
            guard let s = v.stringValue, let secs = BlazarDuration.seconds(s) else {
                throw BlazarError.malformed(field)
            }
            if moveStart {
                start = start + Int64(sign) * secs
                p["start"] = .string(start.rfc3339)
            }
            if moveEnd {
                end = end + Int64(sign) * secs
                p["end"] = .string(end.rfc3339)
            }
        }
        guard start > Timestamp.distantPast, end < Timestamp.distantFuture else {
            throw BlazarError(400, "The new dates are out of range")
        }
        if p["start"] != nil || p["end"] != nil {
            if status == "ended" { throw BlazarError(400, "Terminated leases can only be renamed") }
            if end <= start || end < minute {
                throw BlazarError(400, "End date must be later than current and start date")
            }
        }
        if let be = try BlazarDate.parseRequest(b["before_end_date"], field: "before_end_date") {
            guard be > start && be < end else { throw BlazarError(403, "Datetime is out of lease limits") }
            p["before_end_s"] = .int(end - be)
        }
        if let list = b["reservations"], !list.isNull {
            guard case .array(let changes) = list else { throw BlazarError.malformed("reservations") }
            var current = lease["reservations"]?.arrayValue ?? []
            for change in changes {
                guard case .object(let c) = change, let rid = c["id"]?.stringValue else {
                    throw BlazarError.missing(["id"])
                }
                guard let i = current.firstIndex(where: { $0["id"]?.stringValue == rid }) else {
                    throw BlazarError.notFound("reservation_id", rid)
                }
                current[i] = try updated(current[i], with: c)
            }
            p["reservations"] = .array(current.map(request(of:)))
        }
        return .object(p)
    }

    /// A stored reservation with a Blazar change applied (min/max, amount, properties).
    static func updated(_ r: JSON, with c: [String: JSON]) throws(BlazarError) -> JSON {
        guard case .object(var o) = r else { return r }
        switch o["kind"]?.stringValue {
        case "host":
            if c["min"] != nil || c["max"] != nil {
                let lo =
                    try c["min"].map { v throws(BlazarError) in try integer(v, "min") }
                    ?? o["count"]?.intValue ?? o["min"]?.intValue ?? 1
                let hi =
                    try c["max"].map { v throws(BlazarError) in try integer(v, "max") }
                    ?? o["count"]?.intValue ?? o["max"]?.intValue ?? lo
                if lo < 1 || hi < 1 {
                    throw BlazarError(400, "Malformed parameter min and max (must be greater than or equal to 1)")
                }
                if hi < lo {
                    throw BlazarError(
                        400, "Invalid values for min/max of hosts. Max must be equal to or larger than min.")
                }
                o["count"] = nil
                o["min"] = nil
                o["max"] = nil
                if lo == hi {
                    o["count"] = .int(lo)
                } else {
                    o["min"] = .int(lo)
                    o["max"] = .int(hi)
                }
            }
            if c["hypervisor_properties"] != nil || c["resource_properties"] != nil {
                o["properties"] = try BlazarPropertyExpression.filter(
                    hypervisor: c["hypervisor_properties"], resource: c["resource_properties"])
            }
        case "instance":
            if let a = c["amount"] { o["count"] = .int(try integer(a, "amount")) }
            if c["resource_properties"] != nil, o["source_flavor"] == nil {
                o["properties"] = try BlazarPropertyExpression.filter(
                    hypervisor: nil, resource: c["resource_properties"])
            }
        default:
            if let a = c["amount"] { o["count"] = .int(try integer(a, "amount")) }
        }
        return .object(o)
    }

    /// The request part of a stored reservation, with its `id`, as `lease.update` takes it.
    static func request(of r: JSON) -> JSON {
        guard case .object(var o) = r else { return r }
        for k in ["status", "allocations", "flavor_id"] { o[k] = nil }
        if o["properties"] == .null { o["properties"] = nil }
        return .object(o)
    }
}

/// Blazar's duration strings for `prolong_for` and friends: `1h`, `30m`, `2d`, `45s`, `1w`.
enum BlazarDuration {
    static let maxSeconds: Int64 = 1000 * 366 * 86_400

    /// Blazar's own spellings (`1h`, `30m`, `2d`, or plain seconds) are a subset of Berth's.
    static func seconds(_ text: String) -> Int64? {
        // Nothing longer than a thousand years: a date moved by it still fits Berth's calendar.
        guard let total = DurationText.seconds(text.trimmingCharacters(in: .whitespaces)), total <= maxSeconds
        else { return nil }
        return total
    }
}
