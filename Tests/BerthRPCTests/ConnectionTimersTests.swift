import BerthJSON
import Testing

@testable import BerthRPC

/// The connection timeouts' bookkeeping, on a fake timeline (no clocks, no sockets).
@Suite("Connection timers")
struct ConnectionTimersTests {
    let t0 = ContinuousClock.now

    func at(_ seconds: Double) -> ContinuousClock.Instant { t0 + .milliseconds(Int64(seconds * 1000)) }

    func timers(idle: Int64? = 10, request: Int64? = 5, write: Int64? = 7) -> ConnectionTimers {
        ConnectionTimers(
            idleTimeout: idle.map { .seconds($0) },
            requestTimeout: request.map { .seconds($0) },
            writeTimeout: write.map { .seconds($0) },
            now: t0
        )
    }

    @Test func idleFiresAtTheTimeoutAndNotBefore() {
        let t = timers()
        #expect(t.check(at: at(9.999), subscribed: false) == .wait(until: at(10)))
        #expect(t.check(at: at(10), subscribed: false) == .idle)
    }

    @Test func aCompleteRequestRestartsTheIdleClock() {
        var t = timers()
        t.received(partial: false, at: at(8))
        t.lineCompleted()
        t.requestTaken()
        // Handling a request (however long) is not idleness.
        #expect(t.check(at: at(30), subscribed: false) == .wait(until: nil))
        t.awaitingNext(at: at(30))
        #expect(t.check(at: at(39), subscribed: false) == .wait(until: at(40)))
        #expect(t.check(at: at(40), subscribed: false) == .idle)
    }

    @Test func bytesWithoutARequestDoNotRestartTheIdleClock() {
        var t = timers()
        t.received(partial: false, at: at(9))  // e.g. blank lines
        #expect(t.check(at: at(10), subscribed: false) == .idle)
    }

    @Test func aSubscriberIsNeverIdle() {
        let t = timers()
        #expect(t.check(at: at(10), subscribed: true) == .wait(until: at(20)))
        #expect(t.check(at: at(500), subscribed: true) == .wait(until: at(510)))
    }

    @Test func aTricklingLineHitsTheRequestTimeout() {
        var t = timers()
        t.received(partial: true, at: at(1))
        t.received(partial: true, at: at(3))  // more bytes, still no newline
        #expect(t.check(at: at(5.9), subscribed: false) == .wait(until: at(6)))
        #expect(t.check(at: at(6), subscribed: false) == .requestTimeout)
        // Not idle while a line is arriving.
        #expect(t.check(at: at(5.9), subscribed: false) != .idle)
    }

    @Test func finishingTheLineStopsTheRequestClock() {
        var t = timers()
        t.received(partial: true, at: at(1))
        t.lineCompleted()
        t.received(partial: false, at: at(4))
        t.requestTaken()
        t.awaitingNext(at: at(4.5))
        #expect(t.check(at: at(7), subscribed: false) == .wait(until: at(14.5)))
    }

    @Test func aPartialLineLeftUnreadWhileBusyIsNotTheClientsDelay() {
        var t = timers()
        // Requests pipelined with a partial one at the end of the read; the server is busy with the
        // complete ones for 20 s (its read backpressure holds the rest of the line in the kernel).
        t.received(partial: true, at: at(1))
        t.requestTaken()
        #expect(t.check(at: at(20), subscribed: false) == .wait(until: nil))
        t.awaitingNext(at: at(21))
        #expect(t.check(at: at(25.5), subscribed: false) == .wait(until: at(26)))
        #expect(t.check(at: at(26), subscribed: false) == .requestTimeout)
    }

    @Test func flushedOutputNotTakenHitsTheWriteTimeout() {
        var t = timers(idle: nil)
        t.requestTaken()
        t.flushed(3, at: at(2))
        t.written(at: at(3))  // progress: the clock restarts
        #expect(t.check(at: at(9.9), subscribed: false) == .wait(until: at(10)))
        #expect(t.check(at: at(10), subscribed: false) == .writeTimeout)
        t.written(at: at(9))
        t.written(at: at(9.5))
        #expect(t.writeStallSince == nil)
        #expect(t.check(at: at(100), subscribed: false) == .wait(until: nil))
    }

    @Test func writesInFlightAreNotIdleness() {
        var t = timers(idle: 1, write: nil)
        t.flushed(1, at: at(0.5))
        #expect(t.check(at: at(50), subscribed: false) == .wait(until: nil))
        t.written(at: at(50))
        #expect(t.check(at: at(50.5), subscribed: false) == .wait(until: at(51)))
    }

    @Test func noTimeoutsNoDeadlines() {
        var t = timers(idle: nil, request: nil, write: nil)
        t.received(partial: true, at: at(1))
        t.flushed(1, at: at(1))
        #expect(t.check(at: at(1_000_000), subscribed: false) == .wait(until: nil))
    }

    @Test func shortestTimeoutBoundsTheWatchdogSleep() {
        #expect(RPCConnectionLimits().shortestTimeout == .seconds(30))
        #expect(
            RPCConnectionLimits(idleTimeout: .seconds(2), requestTimeout: nil, writeTimeout: nil).shortestTimeout
                == .seconds(2))
        #expect(RPCConnectionLimits.unlimited.shortestTimeout == nil)
    }
}

/// The limits on a real server (sub-second timeouts; each wait is a blocking read that ends when the
/// server writes or closes).
@Suite("Connection limits", .timeLimit(.minutes(1)))
struct ConnectionLimitsServerTests {
    @Test func oneConnectionOverTheCapGetsAnErrorLineAndIsClosed() async throws {
        try await withServer(limits: RPCConnectionLimits(maxConnections: 2)) { server in
            let a = try await server.connect()
            let b = try await server.connect()
            let path = server.path
            let (served, refused, closed) = try await onThread {
                a.send(request("echo", id: 1, params: ["n": 1]))
                b.send(request("echo", id: 2, params: ["n": 2]))
                let served = [try a.readJSON(), try b.readJSON()]
                let c = try LineClient(path: path)
                return (served, try c.readJSON(), c.readsEndOfStream())
            }
            #expect(served[0]["id"] == 1 && served[1]["id"] == 2)
            #expect(refused["id"] == .null)
            #expect(refused.errorCode == -32007)
            #expect(refused["error"]?["data"]?["rule"] == "max_connections")
            #expect(closed)
            // The refused connection was never counted: still two.
            #expect(server.server.connectionCount == 2)
        }
    }

    @Test func idleConnectionGetsAnErrorLineThenIsClosed() async throws {
        let limits = RPCConnectionLimits(idleTimeout: .milliseconds(200), requestTimeout: nil, writeTimeout: nil)
        try await withServer(limits: limits) { server in
            let client = try await server.connect()
            let started = ContinuousClock.now
            let (reply, line, closed) = try await onThread {
                client.send(request("echo", id: 1, params: ["x": 1]))
                return (try client.readJSON(), try client.readJSON(), client.readsEndOfStream())
            }
            let elapsed = ContinuousClock.now - started
            #expect(reply["id"] == 1)
            #expect(line["id"] == .null)
            #expect(line.errorCode == -32007)
            #expect(line["error"]?["data"]?["rule"] == "idle_timeout_s")
            #expect(closed)
            #expect(elapsed >= .milliseconds(200))
        }
    }

    @Test func unfinishedRequestLineTimesOut() async throws {
        let limits = RPCConnectionLimits(idleTimeout: nil, requestTimeout: .milliseconds(200), writeTimeout: nil)
        try await withServer(limits: limits) { server in
            let client = try await server.connect()
            let (line, closed) = try await onThread {
                client.write("{\"jsonrpc\":\"2.0\",")
                return (try client.readJSON(), client.readsEndOfStream())
            }
            #expect(line.errorCode == -32600)
            #expect(line["error"]?["data"]?["rule"] == "request_timeout_s")
            #expect(closed)
        }
    }
}
