// The physical floor: a raw Unix-socket line client, and an echo server with berthd's framing
// (one line in, the same line out) running on threads inside berth-bench.
#if canImport(Glibc)
    import Glibc
#endif

enum UnixSocket {
    static func address(_ path: String) -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes.prefix(raw.count - 1))
            raw[min(bytes.count, raw.count - 1)] = 0
        }
        return (addr, socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1))
    }

    static func connect(_ path: String) -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let (a, len) = address(path)
        var addr = a
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) }
        }
        if rc != 0 {
            close(fd)
            return nil
        }
        return fd
    }

    static func listen(_ path: String) -> Int32? {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let (a, len) = address(path)
        var addr = a
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard rc == 0, Glibc.listen(fd, 128) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
            if n > 0 {
                off += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return false
            }
        }
        return true
    }
}

/// A blocking line client that only counts replies (no JSON parsing), so that what it measures is
/// the server and the socket, not the client's decoding. Used against berthd and against the echo
/// server alike.
final class LineClient {
    let fd: Int32
    private var buf = [UInt8](repeating: 0, count: 1 << 20)
    private(set) var bytesReceived = 0
    /// Whether the last reply line read contained `"error"` (checked on the first reply of a run).
    var firstReplyHasError = false
    private var lastLine: [UInt8] = []

    init?(path: String) {
        guard let fd = UnixSocket.connect(path) else { return nil }
        self.fd = fd
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { UnixSocket.sendAll(fd, $0) } }

    /// Blocks until at least one more byte arrives; returns how many newlines it contained (-1 at EOF/error).
    func receive(keepLast: Bool = false) -> Int {
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return -1 }
            bytesReceived += n
            var lines = 0
            buf.withUnsafeBufferPointer { p in
                var q = p.baseAddress!
                var left = n
                while left > 0, let hit = memchr(q, 0x0A, left) {
                    lines += 1
                    let h = UnsafePointer(hit.assumingMemoryBound(to: UInt8.self))
                    left -= (h - q) + 1
                    q = h + 1
                }
            }
            if keepLast { lastLine.append(contentsOf: buf[0..<n]) }
            return lines
        }
    }

    /// One request, one reply: the reply's bytes (for checking).
    func roundTrip(_ line: [UInt8]) -> [UInt8]? {
        lastLine.removeAll(keepingCapacity: true)
        guard send(line) else { return nil }
        var got = 0
        while got == 0 {
            let k = receive(keepLast: true)
            if k < 0 { return nil }
            got += k
        }
        return lastLine
    }

    /// Sends `total` requests from `lines` (cycling), keeping `window` of them in flight; returns
    /// false if the peer went away.
    func pipelined(_ lines: [[UInt8]], total: Int, window: Int) -> Bool {
        var sent = 0
        var received = 0
        var next = 0
        func sendBatch(_ k: Int) -> Bool {
            guard k > 0 else { return true }
            var out: [UInt8] = []
            out.reserveCapacity(k * (lines[0].count + 1))
            for _ in 0..<k {
                out.append(contentsOf: lines[next])
                next = (next + 1) % lines.count
            }
            sent += k
            return send(out)
        }
        guard sendBatch(min(window, total)) else { return false }
        while received < total {
            let k = receive()
            if k < 0 { return false }
            received += k
            if !sendBatch(min(k, total - sent)) { return false }
        }
        return true
    }
}

/// One line in, the same line out, one thread per connection: the cheapest server with berthd's framing.
final class EchoServer: @unchecked Sendable {
    let path: String
    private let listenFD: Int32
    private var acceptThread: pthread_t?

    /// `cpu`: pin the threads that serve connections to this CPU (nil: let the kernel place them).
    init?(path: String, cpu: Int? = nil) {
        guard let fd = UnixSocket.listen(path) else { return nil }
        self.path = path
        self.listenFD = fd
        let lfd = fd
        acceptThread = startThread {
            while true {
                let c = accept(lfd, nil, nil)
                if c < 0 {
                    if errno == EINTR { continue }
                    return  // listener shut down
                }
                pthread_detach(
                    startThread {  // ends when the client closes
                        if let cpu { pinCurrentThread(to: cpu) }
                        EchoServer.serve(c)
                    })
            }
        }
    }

    private static func serve(_ fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var pending: [UInt8] = []
        defer { close(fd) }
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            // Echo every complete line received so far, in one write; keep the partial tail.
            guard let lastNL = buf[0..<n].lastIndex(of: 0x0A) else {
                pending.append(contentsOf: buf[0..<n])
                continue
            }
            var ok: Bool
            if pending.isEmpty {
                ok = buf.withUnsafeBytes { UnixSocket.sendAll(fd, UnsafeRawBufferPointer(rebasing: $0[0...lastNL])) }
            } else {
                pending.append(contentsOf: buf[0...lastNL])
                ok = pending.withUnsafeBytes { UnixSocket.sendAll(fd, $0) }
                pending.removeAll(keepingCapacity: true)
            }
            if lastNL + 1 < n { pending.append(contentsOf: buf[(lastNL + 1)..<n]) }
            if !ok { return }
        }
    }

    func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        if let t = acceptThread { join(t) }
        unlink(path)
    }
}
