import BerthJSON

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking HTTP/1.1 client on one keep-alive TCP connection, as a portal's REST client holds
/// one: the REST API's latency without a client library's own costs.
final class HTTPConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init?(port: Int) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if ok != 0 {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    /// A port nobody listens on now (bound and released), for a daemon to listen on.
    static func freePort() -> Int {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    struct Reply {
        var status: Int
        var body: JSON?
    }

    enum Failure: Error { case closed, malformed }

    /// One request and its whole reply.
    func send(_ method: String, _ path: String, token: String, body: JSON? = nil) throws -> Reply {
        let payload = body.map { Array($0.serialized().utf8) } ?? []
        var head =
            "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: \(token)\r\nAccept: application/json\r\n"
        if body != nil { head += "Content-Type: application/json\r\n" }
        head += "Content-Length: \(payload.count)\r\n\r\n"
        let bytes = Array(head.utf8) + payload
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw Failure.closed }
            sent += n
        }
        // Headers, then exactly Content-Length bytes of body.
        var headerEnd: Int? = nil
        while headerEnd == nil {
            headerEnd = HTTPConnection.find([13, 10, 13, 10], in: buffer)
            if headerEnd == nil { try fill() }
        }
        let headerText = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        let lines = headerText.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
            let status = Int(statusLine.split(separator: " ")[1])
        else { throw Failure.malformed }
        var length = 0
        for l in lines.dropFirst() {
            let kv = l.split(separator: ":", maxSplits: 1)
            if kv.count == 2, kv[0].lowercased() == "content-length" {
                length = Int(String(kv[1].filter { $0 != " " && $0 != "\t" })) ?? 0
            }
        }
        let start = headerEnd! + 4
        while buffer.count < start + length { try fill() }
        let bodyBytes = Array(buffer[start..<(start + length)])
        buffer.removeFirst(start + length)
        return Reply(status: status, body: bodyBytes.isEmpty ? nil : try? JSONParser.parse(bodyBytes))
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw Failure.closed }
        buffer.append(contentsOf: chunk[0..<n])
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            if Array(hay[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}
