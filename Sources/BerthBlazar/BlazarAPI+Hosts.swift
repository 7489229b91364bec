import BerthContract
import BerthCore
import BerthJSON
import BerthService
import Hummingbird

/// `/v1/os-hosts`: enrolling, changing and removing hosts, their allocations and properties.
/// Every call is admin only (Blazar's default policy).
extension BlazarAPI {
    func addHostRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/os-hosts") { request, _ in
            await admin(request, "oshosts:get") { () throws(BlazarError) in
                ["hosts": .array(try await hosts().map(BlazarHostView.host))]
            }
        }
        router.post("/v1/os-hosts") { request, _ in
            await admin(request, "oshosts:post", status: .created) { () throws(BlazarError) in
                ["host": BlazarHostView.host(try await enroll(try await body(request)))]
            }
        }
        router.get("/v1/os-hosts/allocations") { request, _ in
            await admin(request, "oshosts:get_allocations") { () throws(BlazarError) in
                let q = request.uri.queryParameters
                let all = try await allocations(
                    hosts: try await hosts(), lease: q.get("lease_id"), reservation: q.get("reservation_id"))
                return ["allocations": .array(all)]
            }
        }
        router.get("/v1/os-hosts/properties") { request, _ in
            await admin(request, "oshosts:get_resource_properties") { () throws(BlazarError) in
                // Blazar reads both flags as Python truthiness of the raw string ("False" is true).
                let q = request.uri.queryParameters
                let detail = !(q.get("detail") ?? "").isEmpty
                let all = !(q.get("all") ?? "").isEmpty
                return ["resource_properties": .array(try await properties(all: all, detail: detail))]
            }
        }
        router.patch("/v1/os-hosts/properties/{name}") { request, context in
            let name = context.parameters.get("name") ?? ""
            return await admin(request, "oshosts:update_resource_properties") { () throws(BlazarError) in
                let b = try await body(request)
                guard let isPrivate = b["private"]?.boolValue else { throw BlazarError.missing(["private"]) }
                let p: JSON
                do throws(BerthError) {
                    p = try await methods.setHostPropertyPrivate(name, isPrivate)
                } catch {
                    throw BlazarError(BerthMethods.rpcError(error), notFound: ("property_name", name))
                }
                return [
                    "resource_property": [
                        "id": .string(name), "property_name": .string(name), "resource_type": "physical:host",
                        "private": p["private"] ?? false,
                    ]
                ]
            }
        }
        router.get("/v1/os-hosts/{id}") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await admin(request, "oshosts:get") { () throws(BlazarError) in
                ["host": BlazarHostView.host(try await host(id: id))]
            }
        }
        router.get("/v1/os-hosts/{id}/allocation") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await admin(request, "oshosts:get_allocations") { () throws(BlazarError) in
                let h = try await host(id: id)
                let q = request.uri.queryParameters
                let one = try await allocations(
                    hosts: [h], lease: q.get("lease_id"), reservation: q.get("reservation_id"))
                return ["allocation": one.first ?? ["resource_id": .string(id), "reservations": .array([])]]
            }
        }
        router.put("/v1/os-hosts/{id}") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await admin(request, "oshosts:put") { () throws(BlazarError) in
                let h = try await host(id: id)
                guard case .object(var caps) = try await body(request) else {
                    throw BlazarError(400, "No data to update")
                }
                // python-blazarclient's library sends {"values": {...}} in some versions.
                if case .object(let v)? = caps["values"], caps.count == 1 { caps = v }
                if caps.isEmpty { throw BlazarError(400, "No data to update") }
                var props = h["properties"]?.objectValue ?? [:]
                var fields: [String: JSON] = ["name": h["name"] ?? .null]
                for (k, v) in caps {
                    if k == "reservable" {
                        guard let b = v.boolValue ?? v.stringValue.flatMap(BlazarAPI.pythonBool) else {
                            throw BlazarError.malformed("reservable")
                        }
                        fields["reservable"] = .bool(b)
                    } else if BlazarHostView.reserved.contains(k) {
                        throw BlazarError(409, "Can't update \(k) of Host \(id): it comes from the cloud")
                    } else if k.utf8.count > 64 {
                        throw BlazarError(400, "Extra capability key too long")
                    } else if v.isNull {
                        props[k] = nil
                    } else {
                        props[k] = .string(BlazarHostView.text(v))
                    }
                }
                fields["properties"] = .object(props)
                return [
                    "host": BlazarHostView.host(
                        try await call(.hostUpdate, .object(fields), role: .admin, notFound: ("host_id", id)))
                ]
            }
        }
        router.delete("/v1/os-hosts/{id}") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await admin(request, "oshosts:delete", status: .noContent) { () throws(BlazarError) -> JSON? in
                let h = try await host(id: id)
                do throws(BlazarError) {
                    _ = try await call(.hostDelete, ["name": h["name"] ?? .null], role: .admin)
                } catch {
                    if error.status == 409 {
                        var e = BlazarError(409, "Can't delete host \(id). The host is reserved.")
                        e.extra = error.extra
                        throw e
                    }
                    throw error
                }
                return nil
            }
        }
    }

    /// Runs `body` for an admin caller; anyone else gets Blazar's policy refusal.
    func admin(
        _ request: Request, _ action: String, status: HTTPResponse.Status = .ok,
        _ body: @escaping () async throws(BlazarError) -> JSON?
    ) async -> Response {
        await respond(request, status: status) { caller throws(BlazarError) in
            guard caller.isAdmin else { throw BlazarError.policy(action) }
            return try await body()
        }
    }

    func hosts() async throws(BlazarError) -> [JSON] {
        try await call(.hostList, .object([:]), role: .admin)["items"]?.arrayValue ?? []
    }

    /// The host with Blazar id `id` (a decimal string).
    func host(id: String) async throws(BlazarError) -> JSON {
        guard let n = Int64(id), n > 0, let h = try await hosts().first(where: { $0["id"]?.intValue == n }) else {
            throw BlazarError.notFound("host_id", id)
        }
        return h
    }

    /// `POST /v1/os-hosts`: the host's size comes from the cloud's hypervisor of that name; the
    /// other members of the body are extra capabilities.
    func enroll(_ body: JSON) async throws(BlazarError) -> JSON {
        guard case .object(let b) = body else { throw BlazarError(400, "The request body must be a JSON object") }
        guard let name = b["name"]?.stringValue, !name.isEmpty else {
            throw BlazarError(403, "Invalid values for host \(body.serialized())")
        }
        let hypervisor: Hypervisor?
        do throws(BerthError) {
            hypervisor = try await catalog.hypervisor(named: name)
        } catch {
            throw BlazarError(502, error.message, extra: ["reason": .string(error.code.reason)])
        }
        guard let hv = hypervisor else { throw BlazarError(404, "Host '\(name)' not found!") }
        var props: [String: JSON] = [:]
        for (k, v) in b where k != "name" && !BlazarHostView.reserved.contains(k) {
            guard k.utf8.count <= 64 else { throw BlazarError(400, "Extra capability key too long") }
            props[k] = .string(BlazarHostView.text(v))
        }
        let params: JSON = [
            "name": .string(name), "vcpus": .int(max(hv.vcpus, 1)), "memory_mb": .int(max(hv.memoryMB, 1)),
            "disk_gb": .int(max(hv.diskGB, 0)), "properties": .object(props),
        ]
        return try await call(.hostCreate, params, role: .admin)
    }

    /// Per host, the reservations holding it from now on (current and future leases).
    func allocations(hosts: [JSON], lease: String?, reservation: String?) async throws(BlazarError) -> [JSON] {
        let names = hosts.compactMap { $0["name"]?.stringValue }
        guard !names.isEmpty else { return [] }
        let cal = try await call(
            .calendarGet,
            [
                "from": .string(methods.now.rfc3339), "to": .string(Timestamp.distantFuture.rfc3339),
                "hosts": .array(names.map { .string($0) }),
            ], role: .admin)
        var byName: [String: [JSON]] = [:]
        for row in cal["hosts"]?.arrayValue ?? [] {
            guard let n = row["name"]?.stringValue else { continue }
            var seen: Set<String> = []
            for a in row["allocations"]?.arrayValue ?? [] {
                guard let rid = a["reservation_id"]?.stringValue, let lid = a["lease_id"]?.stringValue else { continue }
                if let lease, lid != lease { continue }
                if let reservation, rid != reservation { continue }
                guard seen.insert(rid).inserted else { continue }
                byName[n, default: []].append([
                    "id": .string(rid), "lease_id": .string(lid),
                    "start_date": BlazarDate.response(a["start"]?.stringValue),
                    "end_date": BlazarDate.response(a["end"]?.stringValue),
                ])
            }
        }
        return hosts.map { h in
            [
                "resource_id": .string(String(h["id"]?.intValue ?? 0)),
                "reservations": .array(byName[h["name"]?.stringValue ?? ""] ?? []),
            ]
        }
    }

    /// The extra capabilities in use (private ones only with `all`), with their private flag and
    /// distinct values when `detail` is asked for.
    func properties(all: Bool, detail: Bool) async throws(BlazarError) -> [JSON] {
        let items: [JSON]
        do throws(BerthError) {
            items = try await methods.hostProperties(all: all)["items"]?.arrayValue ?? []
        } catch {
            throw BlazarError(BerthMethods.rpcError(error))
        }
        return items.compactMap { p in
            guard let name = p["property"]?.stringValue, !BlazarHostView.reserved.contains(name) else { return nil }
            guard detail else { return ["property": .string(name)] }
            return ["property": .string(name), "private": p["private"] ?? false, "values": p["values"] ?? .array([])]
        }
    }

    /// Python's spellings of a boolean, as Blazar's clients send them in strings.
    static func pythonBool(_ s: String) -> Bool? {
        switch s.lowercased() {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: return nil
        }
    }
}
