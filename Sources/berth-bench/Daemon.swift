import BerthClient
import BerthJSON

#if canImport(Glibc)
    import Glibc
#endif

/// A real berthd (release build, manual clock) on a temporary state directory.
final class Daemon {
    let berthd: String
    let dir: String
    let socket: String
    let now: String
    private(set) var pid: pid_t = 0
    private(set) var spawnedAt: UInt64 = 0
    /// The Blazar REST API's port (noauth, loopback), chosen free at each spawn.
    private(set) var blazarPort = 0

    init(berthd: String, dir: String, now: String) {
        self.berthd = berthd
        self.dir = dir
        self.socket = dir + "/berth.sock"
        self.now = now
    }

    /// Starts berthd; its output goes to DIR/berthd.log.
    func spawn() -> Bool {
        blazarPort = HTTPConnection.freePort()
        let argv = [
            berthd, "--socket", socket, "--state-dir", dir + "/state", "--clock", "manual", "--now", now, "--log-level",
            "warning", "--blazar-listen", "127.0.0.1:\(blazarPort)", "--blazar-auth", "noauth",
        ]
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, dir + "/berthd.log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        spawnedAt = nanos()
        return posix_spawn(&pid, berthd, &actions, nil, &cargs, environ) == 0
    }

    /// Polls every 2 ms until `system.health` answers; returns seconds since spawn (nil on timeout
    /// or if the process died).
    func waitReady(timeout: Double = 600) -> Double? {
        let deadline = spawnedAt + UInt64(timeout * 1e9)
        while nanos() < deadline {
            if let c = try? BerthConnection(socketPath: socket), (try? c.call("system.health")) != nil {
                let t = seconds(since: spawnedAt)
                c.close()
                return t
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                pid = 0
                return nil
            }
            usleep(2000)
        }
        return nil
    }

    /// SIGTERM and wait; returns seconds until the process exited.
    @discardableResult
    func terminate() -> Double {
        guard pid > 0 else { return 0 }
        let t0 = nanos()
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
        return seconds(since: t0)
    }

    var memory: (rss: Int, hwm: Int)? { pid > 0 ? memoryKiB(pid: pid) : nil }

    var logTail: String {
        guard let text = readFile(dir + "/berthd.log") else { return "" }
        return text.split(separator: "\n").suffix(10).joined(separator: "\n")
    }

    func connect() throws -> BerthConnection { try BerthConnection(socketPath: socket) }

    /// Bytes of the SQLite database and its WAL.
    var stateBytes: Int {
        var total = 0
        for f in ["berth.sqlite", "berth.sqlite-wal"] {
            var st = stat()
            if stat(dir + "/state/" + f, &st) == 0 { total += Int(st.st_size) }
        }
        return total
    }
}

/// Sends `calls` over one connection in pipelined batches; returns the replies in order.
func pipelineAll(_ c: BerthConnection, _ calls: [(String, JSON?)], batch: Int = 500) throws -> [Result<
    JSON, RPCErrorResponse
>] {
    var out: [Result<JSON, RPCErrorResponse>] = []
    out.reserveCapacity(calls.count)
    var i = 0
    while i < calls.count {
        let j = min(calls.count, i + batch)
        out.append(contentsOf: try c.pipeline(Array(calls[i..<j])))
        i = j
    }
    return out
}
