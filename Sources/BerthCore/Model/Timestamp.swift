/// A point in time with second precision, as seconds since the Unix epoch (UTC).
///
/// The contract works in whole seconds; an integer keeps calendar arithmetic exact and cheap.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var seconds: Int64

    public init(seconds: Int64) { self.seconds = seconds }

    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.seconds < b.seconds }

    public static func + (t: Timestamp, d: Int64) -> Timestamp { Timestamp(seconds: t.seconds + d) }
    public static func - (t: Timestamp, d: Int64) -> Timestamp { Timestamp(seconds: t.seconds - d) }
    public static func - (a: Timestamp, b: Timestamp) -> Int64 { a.seconds - b.seconds }

    public static let distantPast = Timestamp(seconds: -62_135_596_800)  // 0001-01-01T00:00:00Z
    public static let distantFuture = Timestamp(seconds: 253_402_300_799)  // 9999-12-31T23:59:59Z

    /// RFC 3339 in UTC with `Z`, e.g. `2030-01-01T10:00:00Z`.
    public var rfc3339: String {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secOfDay = seconds - days * 86_400
        let (y, m, d) = Timestamp.civil(fromDays: days)
        let hh = secOfDay / 3600, mm = (secOfDay % 3600) / 60, ss = secOfDay % 60
        if (0...9999).contains(y) {
            // The common case, written byte by byte (this is on every lease reply's path).
            return String(unsafeUninitializedCapacity: 20) { b in
                func put2(_ v: Int64, _ at: Int) {
                    b[at] = UInt8(truncatingIfNeeded: 48 + v / 10)
                    b[at + 1] = UInt8(truncatingIfNeeded: 48 + v % 10)
                }
                put2(y / 100, 0)
                put2(y % 100, 2)
                b[4] = UInt8(ascii: "-")
                put2(m, 5)
                b[7] = UInt8(ascii: "-")
                put2(d, 8)
                b[10] = UInt8(ascii: "T")
                put2(hh, 11)
                b[13] = UInt8(ascii: ":")
                put2(mm, 14)
                b[16] = UInt8(ascii: ":")
                put2(ss, 17)
                b[19] = UInt8(ascii: "Z")
                return 20
            }
        }
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(hh, 2)):\(pad(mm, 2)):\(pad(ss, 2))Z"
    }

    public var description: String { rfc3339 }

    /// Parses RFC 3339 (`2030-01-01T10:00:00Z`, `...+02:00`, optional fraction which is truncated).
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        func num(_ from: Int, _ len: Int) -> Int64? {
            guard from + len <= b.count else { return nil }
            var v: Int64 = 0
            for k in from..<(from + len) {
                guard b[k] >= 48 && b[k] <= 57 else { return nil }
                v = v * 10 + Int64(b[k] - 48)
            }
            return v
        }
        guard b.count >= 20, let y = num(0, 4), b[4] == UInt8(ascii: "-"), let mo = num(5, 2),
            b[7] == UInt8(ascii: "-"), let d = num(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
            let h = num(11, 2), b[13] == UInt8(ascii: ":"), let mi = num(14, 2), b[16] == UInt8(ascii: ":"),
            let s = num(17, 2)
        else { return nil }
        guard (1...12).contains(mo), d >= 1, d <= Timestamp.daysIn(month: mo, year: y), h < 24, mi < 60, s < 61
        else { return nil }
        var k = 19
        if k < b.count, b[k] == UInt8(ascii: ".") {
            k += 1
            let digits = k
            while k < b.count, b[k] >= 48, b[k] <= 57 { k += 1 }
            if k == digits { return nil }
        }
        guard k < b.count else { return nil }
        var offset: Int64 = 0
        if b[k] == UInt8(ascii: "Z") || b[k] == UInt8(ascii: "z") {
            k += 1
        } else if b[k] == UInt8(ascii: "+") || b[k] == UInt8(ascii: "-") {
            let sign: Int64 = b[k] == UInt8(ascii: "+") ? 1 : -1
            guard let oh = num(k + 1, 2), k + 3 < b.count, b[k + 3] == UInt8(ascii: ":"), let om = num(k + 4, 2),
                oh < 24, om < 60
            else { return nil }
            offset = sign * (oh * 3600 + om * 60)
            k += 6
        } else {
            return nil
        }
        guard k == b.count else { return nil }
        let days = Timestamp.days(fromCivil: y, mo, d)
        seconds = days * 86_400 + h * 3600 + mi * 60 + min(s, 59) - offset
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Howard Hinnant's days_from_civil / civil_from_days.
    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
