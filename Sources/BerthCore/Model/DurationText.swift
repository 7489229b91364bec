/// Durations as people write them: `600`, `90s`, `30m`, `2h`, `1d`, `1w`, or combined (`1h30m`).
/// Nil for anything else, for negative values and for sums that do not fit in 64 bits, so a
/// caller never overflows on what a user typed.
public enum DurationText {
    public static func seconds(_ text: String) -> Int64? {
        let t = text.lowercased()
        if let plain = Int64(t), plain >= 0 { return plain }
        var total: Int64 = 0
        var digits: Int64? = nil
        var sawUnit = false
        for c in t {
            if let d = c.wholeNumberValue, c.isASCII {
                let (m, o1) = (digits ?? 0).multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(d))
                if o1 || o2 { return nil }
                digits = a
                continue
            }
            let unit: Int64
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86_400
            case "w": unit = 604_800
            default: return nil
            }
            guard let n = digits else { return nil }
            let (p, o1) = n.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(p)
            if o1 || o2 { return nil }
            total = sum
            digits = nil
            sawUnit = true
        }
        guard sawUnit, digits == nil else { return nil }
        return total
    }
}
