import BerthJSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A terminal Gantt chart of a `calendar.get` result: one row per host, one row per GPU slot range,
/// time on the horizontal axis scaled to the terminal width.
///
/// Layout (every line is exactly `labelWidth + 1 + columns` wide, except the title and legend):
///
///     2030-01-01T00:00:00Z .. 2030-01-02T00:00:00Z, one column = 30m
///                 00:00       06:00       12:00       18:00
///                 |-----------|-----------|-----------|-----------
///     compute-01  ..AAAAAAAA......................................
///     gpu-01      ................................................
///       gpu0 s0-3 ....BBBBBBBB....................................
///       gpu0 s4   ....CCCC........................................
///       gpu1      ................................................
///
///     KEY  LEASE  ID        PROJECT  KIND  START                 END
///     A    demo   4f0c...   p1       host  2030-01-01T01:00:00Z  2030-01-01T05:00:00Z
///
/// Whole-host, instance-slot and preemptible allocations are drawn on the host's row; a GPU slice
/// (an allocation with `gpu`, `slot` and `size`) on the row of its GPU and slot range
/// `[slot, slot + size)` (MIG memory slots 0-7). Every allocation is drawn whole in one lane; when
/// two would share a character cell (they overlap in time, or meet inside one column) the later one
/// goes to an extra lane under the row, so nothing is hidden. A cell is `.` when free, else the
/// letter of its lease or preemptible (A-Z, a-z, 0-9, then `*`), explained in the legend.
enum Gantt {
    static let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    static let maxLabelWidth = 28
    static let minColumns = 10

    /// Tick spacings, smallest that leaves room for a label (5 characters and a space) wins.
    static let tickIntervals: [Int64] = [
        60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172_800, 604_800, 2_592_000,
    ]

    struct Allocation {
        var key: String
        var start: Int64
        var end: Int64?
        var gpu: Int?
        var slot: Int?
        var size: Int?
        var raw: JSON
    }

    struct Row {
        var label: String
        var allocations: [Allocation]
    }

    /// Renders `calendar` (a `calendar.get` result) in `width` characters. `gpuCounts`: GPUs per host
    /// as `host.list` reports them (so idle GPUs get a lane too); hosts missing from it get lanes for
    /// the GPUs their allocations use.
    static func render(_ calendar: JSON, gpuCounts: [String: Int], width: Int) -> [String] {
        guard let from = calendar["from"]?.stringValue.flatMap(RFC3339.parse),
            let to = calendar["to"]?.stringValue.flatMap(RFC3339.parse), to > from
        else { return [Output.pretty(calendar)] }
        let hosts = calendar["hosts"]?.arrayValue ?? []
        if hosts.isEmpty { return ["no hosts"] }

        // Rows, in the daemon's host order.
        var rows: [Row] = []
        var all: [Allocation] = []
        for h in hosts {
            let name = Output.text(h["name"])
            let state = h["state"]?.stringValue ?? "up"
            var hostLevel: [Allocation] = []
            var byGPU: [Int: [Allocation]] = [:]
            for a in h["allocations"]?.arrayValue ?? [] {
                guard let alloc = allocation(a) else { continue }
                all.append(alloc)
                if let g = alloc.gpu, alloc.slot != nil {
                    byGPU[g, default: []].append(alloc)
                } else {
                    hostLevel.append(alloc)
                }
            }
            // A long name is cut, the state never: "spare-node-wi~ [maintenance]".
            let suffix = state == "up" ? "" : " [\(state)]"
            let shown = name.count + suffix.count > maxLabelWidth ? fit(name, maxLabelWidth - suffix.count) : name
            rows.append(Row(label: shown + suffix, allocations: hostLevel))
            let gpuCount = max(gpuCounts[name] ?? 0, (byGPU.keys.max() ?? -1) + 1)
            for g in 0..<gpuCount {
                let slices = byGPU[g] ?? []
                let ranges = Set(slices.map { SlotRange(slot: $0.slot!, size: $0.size ?? 1) }).sorted()
                if ranges.isEmpty { rows.append(Row(label: "  gpu\(g)", allocations: [])) }
                for r in ranges {
                    let label = "  gpu\(g) " + (r.size == 1 ? "s\(r.slot)" : "s\(r.slot)-\(r.slot + r.size - 1)")
                    rows.append(
                        Row(
                            label: label,
                            allocations: slices.filter { SlotRange(slot: $0.slot!, size: $0.size ?? 1) == r }))
                }
            }
        }

        // Letters in order of first start, so the chart reads left to right.
        var letterOf: [String: Character] = [:]
        var firstOfKey: [(key: String, alloc: Allocation)] = []
        for a in all.sorted(by: { ($0.start, $0.key) < ($1.start, $1.key) }) where letterOf[a.key] == nil {
            letterOf[a.key] = firstOfKey.count < letters.count ? letters[firstOfKey.count] : "*"
            firstOfKey.append((a.key, a))
        }

        let labelWidth = min(maxLabelWidth, rows.map(\.label.count).max() ?? 0)
        let columns = max(minColumns, width - labelWidth - 1)
        let span = to - from
        // Cell i covers [from + i*span/columns, from + (i+1)*span/columns), in exact integer arithmetic.
        func column(_ t: Int64) -> Int { Int((t - from) * Int64(columns) / span) }
        func cellRange(_ a: Allocation) -> ClosedRange<Int> {
            let s = max(a.start, from)
            let e = min(a.end ?? to, to)
            let first = min(columns - 1, max(0, column(s)))
            // Last cell whose start is before e: ceil((e - from) * columns / span) - 1.
            let last = Int(((e - from) * Int64(columns) + span - 1) / span) - 1
            return first...max(first, min(columns - 1, last))
        }

        var lines: [String] = []
        lines.append(
            "\(RFC3339.format(from)) .. \(RFC3339.format(to)), one column = \(duration(Double(span) / Double(columns)))"
        )
        let pad = String(repeating: " ", count: labelWidth + 1)
        let (labels, ticks) = axis(from: from, to: to, columns: columns, column: column)
        lines.append(trimRight(pad + String(labels)))
        lines.append(pad + String(ticks))

        for row in rows {
            // Pack into lanes: first lane whose last used cell is before this allocation's first cell.
            var lanes: [[Character]] = []
            var laneEnd: [Int] = []
            for a in row.allocations.sorted(by: { ($0.start, $0.key) < ($1.start, $1.key) }) {
                let cells = cellRange(a)
                var lane = laneEnd.firstIndex { $0 < cells.lowerBound } ?? -1
                if lane < 0 {
                    lanes.append(Array(repeating: ".", count: columns))
                    laneEnd.append(-1)
                    lane = lanes.count - 1
                }
                for c in cells { lanes[lane][c] = letterOf[a.key] ?? "*" }
                laneEnd[lane] = cells.upperBound
            }
            if lanes.isEmpty { lanes = [Array(repeating: ".", count: columns)] }
            for (i, lane) in lanes.enumerated() {
                let label = i == 0 ? fit(row.label, labelWidth) : String(repeating: " ", count: labelWidth)
                lines.append(label + " " + String(lane))
            }
        }

        lines.append("")
        if firstOfKey.isEmpty {
            lines.append("no allocations between \(RFC3339.format(from)) and \(RFC3339.format(to))")
            return lines
        }
        var legend: [[String]] = []
        for (key, first) in firstOfKey {
            let mine = all.filter { $0.key == key }
            let kinds = Set(mine.map { Output.text($0.raw["kind"]) }).sorted().joined(separator: ",")
            let start = mine.map(\.start).min()!
            let end: String = mine.contains { $0.end == nil } ? "-" : RFC3339.format(mine.compactMap(\.end).max()!)
            let isLease = first.raw["lease_id"].map { !$0.isNull } ?? false
            let name = isLease ? (first.raw["lease_name"]?.stringValue ?? "-") : "(preemptible)"
            legend.append([
                String(letterOf[key]!), name, key, Output.text(first.raw["project_id"]), kinds,
                RFC3339.format(start), end,
            ])
        }
        lines += Output.table(["KEY", "LEASE", "ID", "PROJECT", "KIND", "START", "END"], legend)
        return lines
    }

    struct SlotRange: Hashable, Comparable {
        var slot: Int
        var size: Int
        static func < (a: SlotRange, b: SlotRange) -> Bool { (a.slot, a.size) < (b.slot, b.size) }
    }

    static func allocation(_ a: JSON) -> Allocation? {
        let key = [a["lease_id"], a["preemptible_id"]].compactMap { $0?.stringValue }.first
        guard let key, let start = a["start"]?.stringValue.flatMap(RFC3339.parse) else { return nil }
        let end = a["end"]?.stringValue.flatMap(RFC3339.parse)
        return Allocation(
            key: key, start: start, end: end, gpu: a["gpu"]?.intValue.map(Int.init),
            slot: a["slot"]?.intValue.map(Int.init), size: a["size"]?.intValue.map(Int.init), raw: a)
    }

    /// The label line (`HH:MM`, or `MM-DD` at midnight) and the tick line (`|` at ticks, `-` between).
    static func axis(from: Int64, to: Int64, columns: Int, column: (Int64) -> Int) -> ([Character], [Character]) {
        let span = to - from
        var labels = [Character](repeating: " ", count: columns)
        var ticks = [Character](repeating: "-", count: columns)
        // Smallest interval whose ticks are at least 6 columns apart.
        let interval =
            tickIntervals.first { $0 * Int64(columns) >= 6 * span } ?? max(1, span)
        var t = (from + interval - 1) / interval * interval
        var free = 0  // first column a label may start at
        while t < to {
            let c = column(t)
            if c >= 0 && c < columns {
                ticks[c] = "|"
                let text = Array(tickLabel(t))
                if c >= free && c + text.count <= columns {
                    for (i, ch) in text.enumerated() { labels[c + i] = ch }
                    free = c + text.count + 1
                }
            }
            t += interval
        }
        return (labels, ticks)
    }

    static func tickLabel(_ t: Int64) -> String {
        let text = RFC3339.format(t)  // 2030-01-01T10:00:00Z
        let chars = Array(text)
        if t % 86400 == 0 { return String(chars[5..<10]) }  // MM-DD
        return String(chars[11..<16])  // HH:MM
    }

    /// `30m`, `2h`, `1d`, `1h30m`, `12.5s`: the time one column covers.
    static func duration(_ seconds: Double) -> String {
        if seconds.rounded() != seconds || seconds < 60 {
            let s = (seconds * 10).rounded() / 10
            return s.rounded() == s ? "\(Int64(s))s" : "\(s)s"
        }
        var rest = Int64(seconds)
        var out = ""
        for (unit, size) in [("d", Int64(86400)), ("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out
    }

    static func fit(_ s: String, _ width: Int) -> String {
        if s.count > width { return String(s.prefix(max(0, width - 1))) + "~" }
        return s + String(repeating: " ", count: width - s.count)
    }

    static func trimRight(_ s: String) -> String {
        var s = s
        while s.last == " " { s.removeLast() }
        return s
    }

    /// `--width`, else `$COLUMNS`, else the terminal's width when stdout is one, else 100.
    static func terminalWidth(_ explicit: Int?) -> Int {
        if let explicit { return explicit }
        if let c = environment("COLUMNS").flatMap(Int.init), c > 0 { return c }
        var size = winsize()
        if isatty(STDOUT_FILENO) != 0, ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 {
            return Int(size.ws_col)
        }
        return 100
    }
}
