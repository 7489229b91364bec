/// Lowercase random (version 4) UUID strings, as the contract's ids.
public enum UUIDString {
    public static func random<G: RandomNumberGenerator>(using rng: inout G) -> String {
        format((0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    /// A version 4 UUID from the system's CSPRNG: two 64-bit draws (each `UInt8.random` would be
    /// one `getrandom` call of its own, sixteen per id, on every create's path).
    public static func random() -> String {
        var g = SystemRandomNumberGenerator()
        let a = g.next(), b = g.next()
        var bytes = [UInt8](repeating: 0, count: 16)
        for k in 0..<8 {
            bytes[k] = UInt8(truncatingIfNeeded: a >> (8 * k))
            bytes[8 + k] = UInt8(truncatingIfNeeded: b >> (8 * k))
        }
        return format(bytes)
    }

    /// 16 random bytes as a version 4 (random) UUID in lowercase hex.
    static func format(_ random: [UInt8]) -> String {
        var bytes = random
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (k, b) in bytes.enumerated() {
            if k == 4 || k == 6 || k == 8 || k == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func isValid(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 36 else { return false }
        for (k, c) in b.enumerated() {
            if k == 8 || k == 13 || k == 18 || k == 23 {
                if c != UInt8(ascii: "-") { return false }
            } else if !((c >= 48 && c <= 57) || (c >= 97 && c <= 102)) {
                return false
            }
        }
        return true
    }
}
