import BerthContract
import BerthCore
import BerthJSON
import Hummingbird

/// `/v1/leases`: a project's members create, change and delete its leases, its readers read
/// them; admins see every project's. Another project's lease is not found, never visible.
extension BlazarAPI {
    func addLeaseRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/leases") { request, _ in
            await respond(request) { caller throws(BlazarError) in
                guard caller.isAdmin || !caller.roles.isDisjoint(with: ["reader", "member", "manager"]) else {
                    throw BlazarError.policy("leases:get")
                }
                let now = methods.now.rfc3339
                let leases = try await allLeases(project: caller.isAdmin ? nil : caller.projectID)
                let starting = try await leasesStarting(nil)
                return [
                    "leases": .array(
                        leases.map {
                            BlazarLeaseView.lease(
                                $0, now: now, starting: starting.contains($0["id"]?.stringValue ?? ""))
                        })
                ]
            }
        }
        router.post("/v1/leases") { request, _ in
            await respond(request, status: .created) { caller throws(BlazarError) in
                guard caller.mayWrite(project: caller.projectID) else { throw BlazarError.policy("leases:post") }
                let params = try BlazarLeaseRequest.create(try await body(request), caller: caller, now: methods.now)
                return ["lease": try await view(try await call(.leaseCreate, params))]
            }
        }
        router.get("/v1/leases/{id}") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await respond(request) { caller throws(BlazarError) in
                ["lease": try await view(try await visibleLease(id, caller: caller))]
            }
        }
        router.put("/v1/leases/{id}") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await respond(request) { caller throws(BlazarError) in
                let lease = try await visibleLease(id, caller: caller, write: "leases:put")
                let params = try BlazarLeaseRequest.update(try await body(request), lease: lease, now: methods.now)
                return ["lease": try await view(try await call(.leaseUpdate, params, notFound: ("lease_id", id)))]
            }
        }
        router.delete("/v1/leases/{id}") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await respond(request, status: .noContent) { caller throws(BlazarError) in
                _ = try await visibleLease(id, caller: caller, write: "leases:delete")
                _ = try await call(.leaseDelete, ["id": .string(id)], notFound: ("lease_id", id))
                return nil
            }
        }
    }

    /// The lease, if the caller may see it (and, with `write` naming the policy action, change
    /// it). Deleted leases and other projects' leases are not found; a reader asking to write is
    /// refused by policy.
    func visibleLease(_ id: String, caller: BlazarCaller, write: String? = nil) async throws(BlazarError) -> JSON {
        guard BlazarAPI.isLeaseID(id) else { throw BlazarError.notFound("lease_id", id) }
        let lease = try await call(.leaseGet, ["id": .string(id)], notFound: ("lease_id", id))
        let project = lease["project_id"]?.stringValue ?? ""
        guard lease["status"]?.stringValue != "deleted", caller.mayRead(project: project) else {
            throw BlazarError.notFound("lease_id", id)
        }
        if let write, !caller.mayWrite(project: project) { throw BlazarError.policy(write) }
        return lease
    }

    /// One lease in Blazar's shape; an active one is `STARTING` while its start action is pending.
    func view(_ lease: JSON) async throws(BlazarError) -> JSON {
        let id = lease["id"]?.stringValue ?? ""
        let starting = lease["status"]?.stringValue == "active" ? try await leasesStarting(id).contains(id) : false
        return BlazarLeaseView.lease(lease, now: methods.now.rfc3339, starting: starting)
    }

    /// Leases whose `lease.start` action has not been carried out yet (of one lease, or of all).
    func leasesStarting(_ leaseID: String?) async throws(BlazarError) -> Set<String> {
        var out: Set<String> = []
        for status in ["pending", "running"] {
            var cursor: JSON = .null
            repeat {
                var params: [String: JSON] = ["status": .string(status), "limit": 1000]
                if let leaseID { params["lease_id"] = .string(leaseID) }
                if !cursor.isNull { params["cursor"] = cursor }
                let page = try await call(.actionsList, .object(params), role: .admin)
                for a in page["items"]?.arrayValue ?? [] where a["kind"]?.stringValue == "lease.start" {
                    if let l = a["lease_id"]?.stringValue { out.insert(l) }
                }
                cursor = page["next_cursor"] ?? .null
            } while !cursor.isNull
        }
        return out
    }

    /// Every lease not deleted, of one project or of all, in creation order.
    func allLeases(project: String?) async throws(BlazarError) -> [JSON] {
        var out: [JSON] = []
        var cursor: JSON = .null
        repeat {
            var params: [String: JSON] = ["limit": 1000]
            if let project { params["project_id"] = .string(project) }
            if !cursor.isNull { params["cursor"] = cursor }
            let page = try await call(.leaseList, .object(params))
            for l in page["items"]?.arrayValue ?? [] where l["status"]?.stringValue != "deleted" { out.append(l) }
            cursor = page["next_cursor"] ?? .null
        } while !cursor.isNull
        return out
    }

    /// Lease ids are UUIDs; anything else cannot name one (and is not passed on).
    static func isLeaseID(_ s: String) -> Bool {
        s.utf8.count == 36
            && s.utf8.allSatisfy {
                $0 == UInt8(ascii: "-") || ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) || ($0 >= 65 && $0 <= 70)
            }
    }
}
