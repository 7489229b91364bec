import BerthJSON
import BerthRPC
import Testing

/// The dispatcher on its own, without a socket.
@Suite("JSON-RPC dispatcher")
struct JSONRPCDispatcherTests {
    let context = RPCContext(
        peer: PeerCredentials(pid: 1, uid: 1000, gid: 1000),
        connection: RPCConnectionID(rawValue: 1),
        notifications: .closed
    )

    func process(_ text: String, maxBatchSize: Int = 1000) async throws -> JSON? {
        let dispatcher = JSONRPCDispatcher(handler: TestHandler(), maxBatchSize: maxBatchSize)
        guard let reply = await dispatcher.process(line: Array(text.utf8), context: context) else { return nil }
        #expect(!reply.contains(UInt8(ascii: "\n")))
        return try JSONParser.parse(reply)
    }

    @Test func call() async throws {
        let reply = try await process(request("echo", id: 1, params: ["k": "v"]))
        #expect(reply == ["jsonrpc": "2.0", "id": 1, "result": ["k": "v"]])
    }

    @Test func callWithoutParamsPassesNil() async throws {
        let reply = try await process(#"{"jsonrpc":"2.0","method":"echo","id":1}"#)
        #expect(reply?["result"] == .null)
    }

    @Test func notificationsGetNothingEvenWhenTheyFail() async throws {
        #expect(try await process(notification("echo", params: [1])) == nil)
        #expect(try await process(notification("fail")) == nil)
        #expect(try await process(notification("no.such.method")) == nil)
    }

    @Test func batchKeepsOrderAndOmitsNotifications() async throws {
        let reply = try await process(
            "[\(request("echo", id: 3, params: [3])), \(notification("echo")), \(request("echo", id: 1, params: [1]))]"
        )
        #expect(reply == [["jsonrpc": "2.0", "id": 3, "result": [3]], ["jsonrpc": "2.0", "id": 1, "result": [1]]])
    }

    @Test func batchOfInvalidElementsGetsOneErrorEach() async throws {
        let reply = try await process("[1, 2, 3]")
        #expect(reply?.arrayValue?.count == 3)
        #expect(reply?.arrayValue?.allSatisfy { $0.errorCode == -32600 && $0["id"] == .null } == true)
    }

    @Test func oversizedBatchIsRefusedAsAWhole() async throws {
        let batch = "[" + (1...5).map { request("echo", id: .int(Int64($0))) }.joined(separator: ",") + "]"
        let reply = try await process(batch, maxBatchSize: 4)
        #expect(reply?.errorCode == -32600)
        #expect(reply?["id"] == .null)
        #expect(try await process(batch, maxBatchSize: 5)?.arrayValue?.count == 5)
    }

    @Test func parseErrorHasNullID() async throws {
        let reply = try await process(#"{"jsonrpc":"2.0","method":"echo","id":1,}"#)
        #expect(reply?.errorCode == -32700)
        #expect(reply?["id"] == .null)
        #expect(reply?["error"]?["message"]?.stringValue?.hasPrefix("parse error") == true)
        // A batch that is not valid JSON is one parse error, not an array.
        #expect(try await process(#"[{"jsonrpc":"2.0","method":"echo","id":1},"#)?.errorCode == -32700)
    }

    @Test func invalidUTF8IsAParseError() async throws {
        let dispatcher = JSONRPCDispatcher(handler: TestHandler())
        var line = Array(#"{"jsonrpc":"2.0","method":"echo","params":[""#.utf8)
        line += [0xFF, 0xFE]
        line += Array(#""],"id":1}"#.utf8)
        let reply = try JSONParser.parse(try #require(await dispatcher.process(line: line, context: context)))
        #expect(reply.errorCode == -32700)
    }

    @Test func errorFactoriesFollowTheContract() {
        #expect(RPCError.parseError("x").code == -32700)
        #expect(RPCError.parseError("x").reason == "parse_error")
        #expect(RPCError.invalidRequest("x").code == -32600)
        #expect(RPCError.invalidRequest("x").reason == "invalid_request")
        #expect(RPCError.methodNotFound("m").code == -32601)
        #expect(RPCError.methodNotFound("m").reason == "method_not_found")
        #expect(RPCError.internalError("x").code == -32603)
        #expect(RPCError.internalError("x").reason == "internal_error")
        let invalid = RPCError.invalidParams([(path: "a.b", message: "bad"), (path: "c", message: "worse")])
        #expect(invalid.code == -32602)
        #expect(invalid.message == "invalid params: a.b: bad (and 1 more)")
        let errors: JSON = [["path": "a.b", "message": "bad"], ["path": "c", "message": "worse"]]
        #expect(invalid.data == ["reason": "invalid_params", "errors": errors])
    }
}
