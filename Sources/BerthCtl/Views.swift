import BerthJSON

/// How each kind of object is shown to a person. Nothing here derives values the daemon owns:
/// it only picks and arranges fields.
enum Views {
    static let hostOrder = ["name", "state", "reservable", "vcpus", "memory_mb", "disk_gb", "gpus", "properties"]

    static let leaseOrder = [
        "id", "name", "project_id", "user_id", "status", "start", "end", "before_end_s", "degraded", "cost",
        "reservations", "created_at", "updated_at",
    ]

    static let preemptibleOrder = [
        "id", "project_id", "host", "status", "guaranteed_until", "vcpus", "memory_mb", "disk_gb", "gpu_profile",
        "min_lifetime_s", "slurm_node",
    ]

    /// `2x A100-40GB, 1x H100-80GB` from a host's `gpus`.
    static func gpuSummary(_ host: JSON) -> String {
        guard let gpus = host["gpus"]?.arrayValue, !gpus.isEmpty else { return "-" }
        var order: [String] = []
        var counts: [String: Int] = [:]
        for g in gpus {
            let model = g["model"]?.stringValue ?? Output.text(g)
            if counts[model] == nil { order.append(model) }
            counts[model, default: 0] += 1
        }
        return order.map { "\(counts[$0]!)x \($0)" }.joined(separator: ", ")
    }

    static func hostRow(_ h: JSON) -> [String] {
        [
            Output.text(h["name"]), Output.text(h["state"]), Output.text(h["reservable"]), Output.text(h["vcpus"]),
            Output.text(h["memory_mb"]), Output.text(h["disk_gb"]), gpuSummary(h),
            h["properties"]?.objectValue.map { Output.inline($0, separator: ",") } ?? Output.text(h["properties"]),
        ]
    }

    static let hostHeaders = ["NAME", "STATE", "RESERVABLE", "VCPUS", "MEMORY_MB", "DISK_GB", "GPUS", "PROPERTIES"]

    /// The hosts a lease's reservations are allocated on, in order of first appearance.
    static func leaseHosts(_ lease: JSON) -> String {
        var seen = Set<String>()
        var names: [String] = []
        for r in lease["reservations"]?.arrayValue ?? [] {
            for a in r["allocations"]?.arrayValue ?? [] {
                if let h = a["host"]?.stringValue, seen.insert(h).inserted { names.append(h) }
            }
        }
        return names.isEmpty ? "-" : names.joined(separator: ",")
    }

    static let leaseHeaders = ["ID", "NAME", "PROJECT", "STATUS", "START", "END", "HOSTS"]

    static func leaseRow(_ l: JSON) -> [String] {
        var status = Output.text(l["status"])
        if l["degraded"]?.boolValue == true { status += " (degraded)" }
        return [
            Output.text(l["id"]), Output.text(l["name"]), Output.text(l["project_id"]), status,
            Output.text(l["start"]), Output.text(l["end"]), leaseHosts(l),
        ]
    }

    /// The id of a reference that may be a plain id or an object with an `id`.
    static func ref(_ value: JSON?) -> String {
        if let o = value?.objectValue { return Output.text(o["id"] ?? o["name"]) }
        return Output.text(value)
    }

    /// A table whose columns are the `preferred` keys present in any item, then (unless `onlyPreferred`)
    /// every other key, alphabetically.
    static func autoTable(_ items: [JSON], preferred: [String], onlyPreferred: Bool = false) -> [String] {
        var present = Set<String>()
        for item in items { if let o = item.objectValue { present.formUnion(o.keys) } }
        var columns = preferred.filter { present.contains($0) }
        if !onlyPreferred { columns += present.subtracting(preferred).sorted() }
        if columns.isEmpty { return items.map { Output.text($0) } }
        return Output.table(
            columns.map { $0.uppercased() }, items.map { item in columns.map { Output.text(item[$0]) } })
    }

    /// A one-line rendering of an event: `<at>  <type>  seq=<seq>  k=v ...`.
    static func eventLine(_ event: JSON) -> String {
        var parts = [Output.text(event["at"]), Output.text(event["type"])]
        if let seq = event["seq"] { parts.append("seq=\(Output.text(seq))") }
        if let o = event.objectValue {
            let rest = o.filter { !["at", "type", "seq"].contains($0.key) }
            if !rest.isEmpty { parts.append(Output.inline(rest, separator: " ")) }
        } else {
            return event.serialized()
        }
        return parts.joined(separator: "  ")
    }

    /// Rows of `calendar.get`: host, lease, kind, start, end. Accepts the per-host shapes a calendar
    /// may reasonably take (`hosts` or `items` as a list of `{host|name, allocations, preemptibles}`, or
    /// `hosts` as an object keyed by host name); nil when the result has none of them.
    static func calendarRows(_ result: JSON) -> [[String]]? {
        var entries: [(String, JSON)] = []
        if let list = (result["hosts"] ?? result["items"])?.arrayValue {
            for h in list { entries.append((Output.text(h["host"] ?? h["name"]), h)) }
        } else if let byName = result["hosts"]?.objectValue {
            for name in byName.keys.sorted() { entries.append((name, byName[name]!)) }
        } else {
            return nil
        }
        var rows: [[String]] = []
        for (name, h) in entries {
            let allocations = h["allocations"]?.arrayValue ?? h.arrayValue ?? []
            if allocations.isEmpty && (h["preemptibles"]?.arrayValue ?? []).isEmpty {
                rows.append([name, "-", "free", "-", "-"])
            }
            for a in allocations {
                // Lease allocations carry lease_id; preemptibles carry preemptible_id and a null lease_id.
                let lease = [a["lease_id"], a["lease"], a["preemptible_id"]].first { $0 != nil && $0 != .null } ?? nil
                var kind = Output.text(a["kind"])
                if let gpu = a["gpu"] {
                    kind +=
                        " (gpu \(Output.text(gpu))" + (a["profile"].map { " " + Output.text($0) } ?? "")
                        + (a["slot"].map { " slot " + Output.text($0) } ?? "") + ")"
                } else if let slots = a["slots"] {
                    kind += " (\(Output.text(slots)) slots)"
                }
                rows.append([name, ref(lease), kind, Output.text(a["start"]), Output.text(a["end"])])
            }
            for p in h["preemptibles"]?.arrayValue ?? [] {
                rows.append([
                    name, ref(p["id"] ?? p["preemptible"]), "preemptible",
                    Output.text(p["start"] ?? p["created_at"]), Output.text(p["end"]),
                ])
            }
        }
        return rows
    }
}

extension Views {
    /// The items of a list result: `{ "items": [...] }`, or a bare array.
    static func items(_ result: JSON) -> [JSON] {
        result["items"]?.arrayValue ?? result.arrayValue ?? []
    }
}
