import BerthJSON
import BerthRPC
import BerthTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("JSON-RPC over a Unix socket", .timeLimit(.minutes(2)))
struct UnixSocketRPCServerTests {
    // MARK: Requests and notifications

    @Test func singleCall() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(request("echo", id: 1, params: ["a": 1, "b": ["x", true]]))
                return try client.readJSON()
            }
            #expect(reply == ["jsonrpc": "2.0", "id": 1, "result": ["a": 1, "b": ["x", true]]])
        }
    }

    @Test func applicationErrorIsPassedThrough() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let (failed, badParams) = try await onThread {
                client.send(request("fail", id: 3))
                let failed = try client.readJSON()
                client.send(request("bad_params", id: 4))
                return (failed, try client.readJSON())
            }
            let conflict: JSON = ["code": -32005, "message": "conflict", "data": ["reason": "conflict"]]
            #expect(failed == ["jsonrpc": "2.0", "id": 3, "error": conflict])
            #expect(badParams.errorCode == -32602)
            #expect(badParams["id"] == 4)
            let errors: JSON = [["path": "reservations[0].count", "message": "must be positive"]]
            #expect(badParams["error"]?["data"] == ["reason": "invalid_params", "errors": errors])
        }
    }

    @Test func notificationGetsNoReply() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(notification("echo", params: ["n": 1]))
                client.send(notification("no.such.method"))
                client.send(request("echo", id: 2, params: ["n": 2]))
                return try client.readJSON()
            }
            // The first line to come back answers the request sent after the notifications.
            #expect(reply["id"] == 2)
            #expect(reply["result"] == ["n": 2])
        }
    }

    @Test func batchMixedWithNotifications() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let batch: JSON = [
                ["jsonrpc": "2.0", "method": "echo", "params": [1], "id": "a"],
                ["jsonrpc": "2.0", "method": "echo", "params": [2]],
                ["jsonrpc": "2.0", "method": "nope", "id": "b"],
                1,
                ["jsonrpc": "2.0", "method": "fail", "id": "c"],
                ["jsonrpc": "2.0", "method": "notify"],
            ]
            let (pushed, reply) = try await onThread {
                client.send(batch.serialized())
                return (try client.readJSON(), try client.readJSON())
            }
            // The "notify" notification in the batch still runs, and its push comes before the batch reply.
            #expect(pushed == ["jsonrpc": "2.0", "method": "event", "params": [:]])
            let replies = try #require(reply.arrayValue)
            #expect(replies.count == 4)
            #expect(replies[0] == ["jsonrpc": "2.0", "id": "a", "result": [1]])
            #expect(replies[1]["id"] == "b")
            #expect(replies[1].errorCode == -32601)
            #expect(replies[1].errorReason == "method_not_found")
            #expect(replies[2]["id"] == .null)
            #expect(replies[2].errorCode == -32600)
            #expect(replies[3]["id"] == "c")
            #expect(replies[3].errorCode == -32005)
        }
    }

    @Test func emptyBatchIsOneInvalidRequest() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send("[]")
                return try client.readJSON()
            }
            #expect(reply.errorCode == -32600)
            #expect(reply.errorReason == "invalid_request")
            #expect(reply["id"] == .null)
        }
    }

    @Test func batchOfOnlyNotificationsGetsNoReply() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send("[\(notification("echo", params: [1])), \(notification("echo", params: [2]))]")
                client.send(request("echo", id: 7, params: ["after": true]))
                return try client.readJSON()
            }
            #expect(reply == ["jsonrpc": "2.0", "id": 7, "result": ["after": true]])
        }
    }

    @Test(arguments: [
        #""abc""#, #""""#, "42", "-7", "0", "9007199254740993", "null", "1.5", #""\u00e9t\u00e9 \"q\"""#,
    ])
    func idIsEchoedExactly(id: String) async throws {
        try await withServer { server in
            let client = try await server.connect()
            let line = try await onThread {
                client.send(#"{"jsonrpc":"2.0","method":"echo","params":[],"id":\#(id)}"#)
                return client.readLine()
            }
            let reply = try JSONParser.parse(try #require(line))
            #expect(reply["id"] == (try JSONParser.parse(id)))
            #expect(reply["result"] == [])
            // Byte-level echo for the non-escaped forms.
            if !id.contains("\\") {
                #expect(line?.contains(#""id":\#(id)"#) == true)
            }
        }
    }

    @Test(arguments: ["true", "{}", "[1]"])
    func idOfWrongTypeIsInvalidRequestWithNullID(id: String) async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(#"{"jsonrpc":"2.0","method":"echo","id":\#(id)}"#)
                return try client.readJSON()
            }
            #expect(reply.errorCode == -32600)
            #expect(reply["id"] == .null)
        }
    }

    @Test func invalidJSONThenValidRequestOnSameConnection() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let (first, second) = try await onThread {
                client.send(#"{"jsonrpc":"2.0","method":"echo","id":1"#)
                let first = try client.readJSON()
                client.send(request("echo", id: 2, params: ["ok": true]))
                return (first, try client.readJSON())
            }
            #expect(first.errorCode == -32700)
            #expect(first.errorReason == "parse_error")
            #expect(first["id"] == .null)
            #expect(second == ["jsonrpc": "2.0", "id": 2, "result": ["ok": true]])
        }
    }

    @Test(arguments: [
        #"{"jsonrpc":"1.0","method":"echo","id":5}"#,
        #"{"method":"echo","id":5}"#,
        #"{"jsonrpc":2.0,"method":"echo","id":5}"#,
    ])
    func wrongJSONRPCVersion(line: String) async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(line)
                return try client.readJSON()
            }
            #expect(reply.errorCode == -32600)
            #expect(reply.errorReason == "invalid_request")
            #expect(reply["id"] == 5)
        }
    }

    @Test(arguments: [
        #"{"jsonrpc":"2.0","method":1,"id":5}"#,
        #"{"jsonrpc":"2.0","method":null,"id":5}"#,
        #"{"jsonrpc":"2.0","id":5}"#,
    ])
    func nonStringMethod(line: String) async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(line)
                return try client.readJSON()
            }
            #expect(reply.errorCode == -32600)
            #expect(reply["id"] == 5)
        }
    }

    @Test func invalidRequestWithoutIDStillGetsAnError() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let (scalar, noIDBadMethod) = try await onThread {
                client.send("42")
                let scalar = try client.readJSON()
                client.send(#"{"jsonrpc":"2.0","method":1}"#)
                return (scalar, try client.readJSON())
            }
            #expect(scalar.errorCode == -32600)
            #expect(scalar["id"] == .null)
            #expect(noIDBadMethod.errorCode == -32600)
            #expect(noIDBadMethod["id"] == .null)
        }
    }

    @Test(arguments: [#""text""#, "3", "null", "true"])
    func nonStructuredParamsAreInvalidRequest(params: String) async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(#"{"jsonrpc":"2.0","method":"echo","params":\#(params),"id":9}"#)
                return try client.readJSON()
            }
            #expect(reply.errorCode == -32600)
            #expect(reply["id"] == 9)
        }
    }

    @Test func unknownMethod() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(request("lease.frobnicate", id: "x"))
                return try client.readJSON()
            }
            #expect(reply.errorCode == -32601)
            #expect(reply.errorReason == "method_not_found")
            #expect(reply["id"] == "x")
            #expect(reply["error"]?["message"]?.stringValue?.isEmpty == false)
        }
    }

    @Test func blankLinesAndCRLFAreAccepted() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.write("\n   \n\r\n\t\n" + request("echo", id: 1, params: [1]) + "\r\n")
                client.send(request("echo", id: 2, params: [2]))
                return [try client.readJSON(), try client.readJSON()]
            }
            #expect(reply.map { $0["id"] } == [1, 2])
        }
    }

    // MARK: Framing limits and connection behaviour

    @Test func oversizedLineGetsErrorThenConnectionCloses() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let (reply, closed) = try await onThread {
                // 2 MiB without a newline until the very end; the server stops reading long before.
                var line = Array(#"{"jsonrpc":"2.0","method":"echo","id":1,"params":[""#.utf8)
                line += [UInt8](repeating: UInt8(ascii: "x"), count: 2 << 20)
                line += Array(#""]}"#.utf8) + [UInt8(ascii: "\n")]
                client.write(line)  // may fail part-way once the server closes: that is expected
                return (try client.readJSON(), client.readsEndOfStream())
            }
            #expect(reply.errorCode == -32600)
            #expect(reply.errorReason == "request_too_large")
            #expect(reply["error"]?["message"] == "request line exceeds 1048576 bytes")
            #expect(reply["id"] == .null)
            #expect(closed)

            // Nothing else is affected.
            let other = try await server.connect()
            let ok = try await onThread {
                other.send(request("echo", id: 2, params: ["still": "fine"]))
                return try other.readJSON()
            }
            #expect(ok["result"] == ["still": "fine"])
        }
    }

    @Test func lineExactlyAtTheLimitIsAccepted() async throws {
        try await withServer(maxLineLength: 64) { server in
            let exact = request("echo", id: 1, params: ["p"])
            let padded = exact + String(repeating: " ", count: 64 - exact.utf8.count)
            #expect(padded.utf8.count == 64)
            let client = try await server.connect()
            let (first, second, closed) = try await onThread {
                client.send(padded)
                let first = try client.readJSON()
                client.send(padded + " ")
                return (first, try client.readJSON(), client.readsEndOfStream())
            }
            #expect(first["result"] == ["p"])
            #expect(second.errorReason == "request_too_large")
            #expect(second["error"]?["message"] == "request line exceeds 64 bytes")
            #expect(closed)
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let gate = Gate()
        try await withServer(handler: TestHandler(gate: gate)) { server in
            let client = try await server.connect()
            // One write carrying several requests, the first of which is held inside the handler.
            var burst = request("slow", id: 0) + "\n"
            for i in 1...20 {
                burst += request(i % 3 == 0 ? "fail" : "echo", id: .int(Int64(i)), params: [.int(Int64(i))]) + "\n"
            }
            let toSend = burst
            try await onThread { client.write(toSend) }
            await gate.waitForArrivals()
            gate.open()
            let replies = try await onThread { try (0...20).map { _ in try client.readJSON() } }
            #expect(replies.map { $0["id"] } == (0...20).map { JSON.int(Int64($0)) })
            #expect(replies[0]["result"] == "done")
            #expect(replies[1]["result"] == [1])
            #expect(replies[3].errorCode == -32005)
        }
    }

    @Test func manyPipelinedRequestsWithLargeRepliesFlowThrough() async throws {
        try await withServer { server in
            let client = try await server.connect()
            // 400 replies of 16 KiB each: far more than the socket buffers and the server's reply queue
            // hold, so the server has to wait for the client to read while the client is still writing.
            let count = 400
            let payload = JSON.string(String(repeating: "y", count: 16 << 10))
            let lines = (0..<count).map { request("echo", id: .int(Int64($0)), params: [payload]) + "\n" }
            async let written: Bool = onThread { client.write(lines.joined()) }
            let ids = try await onThread {
                try (0..<count).map { _ -> JSON? in
                    let reply = try client.readJSON()
                    return reply["result"] == [payload] ? reply["id"] : nil
                }
            }
            #expect(try await written)
            #expect(ids == (0..<count).map { JSON.int(Int64($0)) })
        }
    }

    @Test func notificationPushedByHandlerArrivesBeforeTheReply() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let (pushed, reply) = try await onThread {
                client.send(request("notify", id: 1, params: ["lease": "abc"]))
                return (try client.readJSON(), try client.readJSON())
            }
            #expect(pushed == ["jsonrpc": "2.0", "method": "event", "params": ["lease": "abc"]])
            #expect(reply == ["jsonrpc": "2.0", "id": 1, "result": true])
        }
    }

    @Test func clientNotReadingNotificationsIsDisconnected() async throws {
        let gate = Gate()
        try await withServer(handler: TestHandler(gate: gate)) { server in
            let client = try await server.connect()
            // More notifications than the server queues for one connection, to a client that is not
            // reading: the server gives up on the connection instead of buffering without bound.
            try await onThread { client.send(request("flood", id: 1, params: [10_000, 1024])) }
            await gate.waitForArrivals()  // the handler has finished pushing
            gate.open()
            let (received, sawReply) = try await onThread {
                var received = 0
                var sawReply = false
                while let line = client.readLine() {
                    if line.contains(#""id""#) { sawReply = true } else { received += 1 }
                }
                return (received, sawReply)
            }
            #expect(received < 10_000)
            #expect(!sawReply)

            let other = try await server.connect()
            let reply = try await onThread {
                other.send(request("echo", id: 2))
                return try other.readJSON()
            }
            #expect(reply["id"] == 2)
        }
    }

    @Test func notificationSinkReportsClosedConnection() async throws {
        let handler = TestHandler()
        try await withServer(handler: handler) { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(request("subscribe", id: 1))
                return try client.readJSON()
            }
            let id = RPCConnectionID(rawValue: UInt64(try #require(reply["result"]?.intValue)))
            let sink = try #require(handler.sinks.withLock { $0[id] })
            #expect(sink.send(method: "event", params: ["n": 1]))
            let pushed = try await onThread { try client.readJSON() }
            #expect(pushed["method"] == "event")

            try await onThread { client.shutdownWrite() }
            var closed = handler.closedConnections.makeAsyncIterator()
            #expect(await closed.next() == id)
            #expect(!sink.send(method: "event", params: ["n": 2]))
        }
    }

    @Test func peerCredentialsAreTheClientProcess() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let reply = try await onThread {
                client.send(request("whoami", id: 1))
                return try client.readJSON()
            }
            #expect(reply["result"]?["uid"]?.intValue == Int64(getuid()))
            #expect(reply["result"]?["gid"]?.intValue == Int64(getgid()))
            #expect(reply["result"]?["pid"]?.intValue == Int64(getpid()))
        }
    }

    @Test func peerCredentialsReaderOnASocketPair() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let peer = try PeerCredentialsReader.read(fileDescriptor: fds[0])
        #expect(peer == PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid()))
    }

    @Test func refusedPeerGetsForbiddenForEveryRequest() async throws {
        try await withServer(handler: TestHandler(refuseEveryone: true)) { server in
            let client = try await server.connect()
            let (call, batch, broken) = try await onThread {
                client.send(notification("echo"))
                client.send(request("echo", id: 1, params: [1]))
                let call = try client.readJSON()
                client.send("[\(request("whoami", id: 2)), \(notification("echo")), \(request("nope", id: 3))]")
                let batch = try client.readJSON()
                client.send("{not json")
                return (call, batch, try client.readJSON())
            }
            #expect(call["id"] == 1)
            #expect(call.errorCode == -32004)
            #expect(call.errorReason == "forbidden")
            #expect(batch.arrayValue?.map { $0.errorCode } == [-32004, -32004])
            #expect(batch.arrayValue?.map { $0["id"] } == [2, 3])
            #expect(broken.errorCode == -32700)
        }
    }

    @Test func halfClosedClientStillGetsItsReplies() async throws {
        try await withServer { server in
            let client = try await server.connect()
            let (replies, closed) = try await onThread {
                client.send(request("echo", id: 1, params: [1]))
                // The last request has no newline, as `printf ... | nc -U -N` would send it.
                client.write(request("echo", id: 2, params: [2]))
                client.shutdownWrite()
                return ([try client.readJSON(), try client.readJSON()], client.readsEndOfStream())
            }
            #expect(replies.map { $0["id"] } == [1, 2])
            #expect(closed)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func thousandConcurrentConnections() async throws {
        let limit = UnixSocketRPCServer.raiseFileDescriptorLimit()
        try #require(limit >= 2_200, "need descriptors for 1,000 clients and their server ends")
        let count = 1_000
        let handler = TestHandler(barrier: Barrier(count: count))
        try await withServer(handler: handler) { server in
            let path = server.path
            // Every client sends a call that only returns once all 1,000 are inside the handler, so
            // the replies prove the connections were served at the same time.
            let replies = try await onThread {
                let clients = try (0..<count).map { _ in try LineClient(path: path) }
                for (i, client) in clients.enumerated() {
                    client.send(request("barrier", id: .int(Int64(i))))
                }
                return try clients.map { try $0.readJSON() }
            }
            #expect(replies.count == count)
            #expect(replies.enumerated().allSatisfy { $0.element["id"] == .int(Int64($0.offset)) })
            #expect(replies.allSatisfy { $0["result"] == "released" })
        }
    }

    @Test func clientDisconnectingMidLineDisturbsNothing() async throws {
        let handler = TestHandler()
        try await withServer(handler: handler) { server in
            let steady = try await server.connect()
            let first = try await onThread {
                steady.send(request("echo", id: 1, params: [1]))
                return try steady.readJSON()
            }
            #expect(first["result"] == [1])

            var closed = handler.closedConnections.makeAsyncIterator()
            do {
                let leaving = try await server.connect()
                try await onThread { leaving.write(#"{"jsonrpc":"2.0","method":"echo","par"#) }
            }  // closed here, mid-line
            #expect(await closed.next() != nil)

            let second = try await onThread {
                steady.send(request("echo", id: 2, params: [2]))
                return try steady.readJSON()
            }
            #expect(second["result"] == [2])
        }
    }

    @Test func clientDisconnectingMidRequestDisturbsNothing() async throws {
        let gate = Gate()
        let handler = TestHandler(gate: gate)
        try await withServer(handler: handler) { server in
            var closed = handler.closedConnections.makeAsyncIterator()
            do {
                let leaving = try await server.connect()
                try await onThread { leaving.send(request("slow", id: 1)) }
                await gate.waitForArrivals()
            }  // gone while its request is in the handler
            gate.open()
            #expect(await closed.next() != nil)

            let other = try await server.connect()
            let reply = try await onThread {
                other.send(request("slow", id: 2))
                return try other.readJSON()
            }
            #expect(reply["result"] == "done")
        }
    }

    // MARK: Lifecycle

    @Test func gracefulShutdownAnswersInFlightRequest() async throws {
        let gate = Gate()
        let running = try await startServer(handler: TestHandler(gate: gate))
        let busy = try await running.connect()
        let idle = try await running.connect()
        let warmUp = try await onThread {
            idle.send(request("echo", id: 0))
            return try idle.readJSON()
        }
        #expect(warmUp["id"] == 0)

        try await onThread {
            busy.write(request("slow", id: 1) + "\n" + request("echo", id: 2) + "\n")
        }
        await gate.waitForArrivals()
        running.server.beginGracefulShutdown()

        // The idle connection is closed without waiting for the busy one.
        #expect(try await onThread { idle.readsEndOfStream() })

        gate.open()
        let (answer, rest) = try await onThread { () -> (JSON, [String]) in
            let answer = try busy.readJSON()
            var rest: [String] = []
            while let line = busy.readLine() { rest.append(line) }
            return (answer, rest)
        }
        #expect(answer == ["jsonrpc": "2.0", "id": 1, "result": "done"])
        // The pipelined request that had not started is either refused as unavailable or, if it had
        // not been read yet, dropped with the connection.
        for line in rest {
            let reply = try JSONParser.parse(line)
            #expect(reply["id"] == 2)
            #expect(reply.errorCode == -32007)
            #expect(reply.errorReason == "unavailable")
        }

        try await running.task.value
        #expect(access(running.path, F_OK) != 0, "socket file removed")
        let path = running.path
        await #expect(throws: ClientError.self) { try await onThread { try LineClient(path: path) } }
    }

    @Test func shutdownWithoutConnectionsReturnsPromptly() async throws {
        let running = try await startServer()
        running.server.beginGracefulShutdown()
        running.server.beginGracefulShutdown()
        try await running.task.value
        #expect(access(running.path, F_OK) != 0)
    }

    @Test func cancellingRunStopsTheServer() async throws {
        let gate = Gate()
        let running = try await startServer(handler: TestHandler(gate: gate))
        let client = try await running.connect()
        try await onThread { client.send(request("slow", id: 1)) }
        await gate.waitForArrivals()
        running.task.cancel()
        #expect(try await onThread { client.readsEndOfStream() })
        gate.open()
        try await running.task.value
        #expect(access(running.path, F_OK) != 0)
    }

    @Test func socketFileGetsTheRequestedMode() async throws {
        let path = UnixSocketAddress.temporaryPath(prefix: "berth-rpc")
        let server = UnixSocketRPCServer(listen: .path(path, mode: 0o600), handler: TestHandler(), logger: quietLogger)
        try await server.bind()
        let task = Task { try await server.run() }
        var info = stat()
        #expect(lstat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(server.socketPath == path)
        server.beginGracefulShutdown()
        try await task.value
        #expect(access(path, F_OK) != 0)

        let defaultMode = try await startServer()
        #expect(lstat(defaultMode.path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
        try await defaultMode.stop()
    }

    @Test func staleSocketFileIsReplaced() async throws {
        let path = UnixSocketAddress.temporaryPath(prefix: "berth-rpc")
        // Leave a socket file behind with nobody listening, as a crashed daemon would.
        let fd = try boundSocket(path: path)
        close(fd)
        #expect(access(path, F_OK) == 0)

        let running = try await startServer(listen: .path(path))
        let client = try await running.connect()
        let reply = try await onThread {
            client.send(request("echo", id: 1, params: [1]))
            return try client.readJSON()
        }
        #expect(reply["result"] == [1])
        try await running.stop()
    }

    @Test func pathInUseByLiveServerIsAClearError() async throws {
        let first = try await startServer()
        let second = UnixSocketRPCServer(listen: .path(first.path), handler: TestHandler(), logger: quietLogger)
        let error = await #expect(throws: RPCServerError.self) { try await second.bind() }
        #expect(error?.description.contains("already listening") == true)
        // The live server's socket was left alone.
        let client = try await first.connect()
        let reply = try await onThread {
            client.send(request("echo", id: 1))
            return try client.readJSON()
        }
        #expect(reply["id"] == 1)
        try await first.stop()
    }

    @Test func missingDirectoryIsAClearError() async throws {
        let path = "/tmp/berth-rpc-no-such-dir-\(getpid())/berth.sock"
        let server = UnixSocketRPCServer(listen: .path(path), handler: TestHandler(), logger: quietLogger)
        let error = await #expect(throws: RPCServerError.self) { try await server.bind() }
        #expect(error?.description.contains("directory") == true)
        #expect(error?.description.contains("No such file or directory") == true)
    }

    @Test func nonSocketFileIsNotRemoved() async throws {
        let path = UnixSocketAddress.temporaryPath(prefix: "berth-rpc")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8)))
        defer { unlink(path) }
        let server = UnixSocketRPCServer(listen: .path(path), handler: TestHandler(), logger: quietLogger)
        let error = await #expect(throws: RPCServerError.self) { try await server.bind() }
        #expect(error?.description.contains("not a socket") == true)
        #expect(FileManager.default.contents(atPath: path) == Data("keep me".utf8))
    }

    @Test func tooLongPathIsAClearError() async throws {
        let path = "/tmp/" + String(repeating: "p", count: 200) + ".sock"
        let server = UnixSocketRPCServer(listen: .path(path), handler: TestHandler(), logger: quietLogger)
        let error = await #expect(throws: RPCServerError.self) { try await server.bind() }
        #expect(error?.description.contains("at most 107") == true)
    }

    @Test func adoptsAnAlreadyListeningDescriptor() async throws {
        let path = UnixSocketAddress.temporaryPath(prefix: "berth-rpc")
        let fd = try boundSocket(path: path)
        #expect(Glibc.listen(fd, 128) == 0)
        defer { unlink(path) }

        let running = try await startServer(listen: .fileDescriptor(fd))
        #expect(running.server.socketPath == path)
        let client = try await running.connect()
        let reply = try await onThread {
            client.send(request("whoami", id: 1))
            return try client.readJSON()
        }
        #expect(reply["result"]?["uid"]?.intValue == Int64(getuid()))
        try await running.stop()
        // Socket activation: the file belongs to whoever created it (systemd), so it stays.
        #expect(access(path, F_OK) == 0)
    }

    @Test func nonListeningDescriptorIsAClearError() async throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        let server = UnixSocketRPCServer(listen: .fileDescriptor(fd), handler: TestHandler(), logger: quietLogger)
        let error = await #expect(throws: RPCServerError.self) { try await server.bind() }
        #expect(error?.description.contains("not listening") == true)
    }

    @Test func runWithoutBindThrows() async throws {
        let path = UnixSocketAddress.temporaryPath(prefix: "berth-rpc")
        let server = UnixSocketRPCServer(listen: .path(path), handler: TestHandler(), logger: quietLogger)
        await #expect(throws: RPCServerError.self) { try await server.run() }
    }
}
