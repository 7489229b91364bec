import BerthContract
import BerthJSON
import Testing

@testable import BerthFuzz

/// The generated method table and the daemon's routing agree with the contract: every method the
/// OpenRPC document names is reached through the real dispatcher (never "method not found", never
/// the internal error of a method nobody serves), names outside it are not, and the table's roles
/// and flags are the document's.
@Suite struct ContractRoutingTests {
    static func call(_ method: String, params: String = "{}") -> [UInt8] {
        Array(#"{"jsonrpc":"2.0","method":"\#(method)","params":\#(params),"id":1}"#.utf8)
    }

    static var document: JSON {
        get throws { try JSONParser.parse(openRPCDocumentText) }
    }

    @Test func everyContractMethodIsRouted() async throws {
        let world = try await FuzzWorld()
        defer { world.remove() }
        for method in RPCMethod.allCases {
            let bytes = try #require(await world.process(Self.call(method.rawValue), connection: 1))
            let reply = try JSONParser.parse(bytes)
            let code = reply["error"]?["code"]?.intValue
            #expect(code != -32601, "\(method.rawValue) is in the contract but not routed")
            #expect(code != -32603, "\(method.rawValue): \(reply["error"]?["message"]?.stringValue ?? "")")
        }
    }

    @Test func namesOutsideTheContractAreNotFound() async throws {
        let world = try await FuzzWorld()
        defer { world.remove() }
        for name in ["lease.frobnicate", "Lease.get", "lease.get ", "lease", "clock."] {
            let bytes = try #require(await world.process(Self.call(name), connection: 1))
            #expect(try JSONParser.parse(bytes)["error"]?["code"] == -32601, "\(name)")
        }
    }

    @Test func tableMatchesTheDocument() throws {
        let methods = try #require(try Self.document["methods"]?.arrayValue)
        #expect(methods.compactMap { $0["name"]?.stringValue } == RPCMethod.allCases.map(\.rawValue))
        for m in methods {
            let method = try #require(RPCMethod(rawValue: m["name"]?.stringValue ?? ""))
            let roles = (m["x-roles"]?.arrayValue ?? []).compactMap(\.stringValue)
            #expect(method.roles.map(\.rawValue) == roles, "\(method.rawValue)")
            for role in Role.allCases {
                #expect(method.allows(role) == roles.contains(role.rawValue), "\(method.rawValue) \(role)")
            }
            #expect(method.isMutating == (m["x-mutating"] == .bool(true)), "\(method.rawValue)")
            #expect(method.isManualClockOnly == (m["x-manual-clock"] == .bool(true)), "\(method.rawValue)")
            let params = (m["params"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            #expect(method.acceptsIdempotencyKey == params.contains("idempotency_key"), "\(method.rawValue)")
        }
    }

    @Test func errorCodesMatchTheDocument() throws {
        guard case .object(let errors)? = try Self.document["components"]?["errors"] else {
            Issue.record("no components.errors")
            return
        }
        #expect(errors.count == RPCErrorCode.allCases.count)
        for (_, e) in errors {
            let code = try #require(e["code"]?.intValue.flatMap { RPCErrorCode(rawValue: Int($0)) })
            #expect(e["data"]?["reason"]?.stringValue == code.reason)
            #expect(e["message"]?.stringValue == code.title)
        }
    }
}
