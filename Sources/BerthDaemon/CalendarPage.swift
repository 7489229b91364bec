import BerthCore
import BerthJSON

/// The read-only calendar page: one self-contained HTML document with an inline SVG Gantt chart
/// drawn from `calendar.get` (no script, no external asset). One row per host; a GPU host also
/// has one lane per GPU, its MIG slices drawn at their slot range. Every string that came from a
/// user (lease, project, host names) is escaped.
enum CalendarPage {
    static let labelWidth = 200.0
    static let chartWidth = 1000.0
    static let rowHeight = 26.0
    static let sliceHeight = 7.0
    static let axisHeight = 34.0

    struct Bar {
        var start: Int64
        var end: Int64
        var alloc: [String: JSON]
    }

    static func render(calendar: JSON, hosts: [JSON], models: GPUModelTable, now: Timestamp) -> String {
        let from = calendar["from"]?.stringValue.flatMap { Timestamp(rfc3339: $0) } ?? now
        let to = calendar["to"]?.stringValue.flatMap { Timestamp(rfc3339: $0) } ?? (now + 7 * 86_400)
        let span = Double(max(to.seconds - from.seconds, 1))
        func x(_ t: Int64) -> Double {
            labelWidth + chartWidth * Double(min(max(t, from.seconds), to.seconds) - from.seconds) / span
        }
        var gpuSpecs: [String: [String]] = [:]
        for h in hosts {
            if let n = h["name"]?.stringValue {
                gpuSpecs[n] = (h["gpus"]?.arrayValue ?? []).map { $0["model"]?.stringValue ?? "?" }
            }
        }

        var body = ""
        var y = axisHeight
        var rows = 0
        for row in calendar["hosts"]?.arrayValue ?? [] {
            let name = row["name"]?.stringValue ?? "?"
            let state = row["state"]?.stringValue ?? "up"
            let allocs = (row["allocations"]?.arrayValue ?? []).compactMap { a -> Bar? in
                guard case .object(let o) = a else { return nil }
                let s = o["start"]?.stringValue.flatMap { Timestamp(rfc3339: $0) }?.seconds ?? from.seconds
                let e = o["end"]?.stringValue.flatMap { Timestamp(rfc3339: $0) }?.seconds ?? to.seconds
                return Bar(start: s, end: e, alloc: o)
            }
            let gpus = gpuSpecs[name] ?? []
            let hostBars = allocs.filter { $0.alloc["gpu"] == nil || $0.alloc["gpu"]?.isNull == true }
            // Bars that overlap in time on the host row go on separate tracks.
            var trackEnds: [Int64] = []
            var placed: [(Bar, Int)] = []
            for b in hostBars.sorted(by: { ($0.start, $0.end) < ($1.start, $1.end) }) {
                if let i = trackEnds.firstIndex(where: { $0 <= b.start }) {
                    trackEnds[i] = b.end
                    placed.append((b, i))
                } else {
                    trackEnds.append(b.end)
                    placed.append((b, trackEnds.count - 1))
                }
            }
            let tracks = max(trackEnds.count, 1)
            let trackH = rowHeight - 6
            let hostH = Double(tracks) * trackH + 6
            body += "<g class=\"host-row\" data-host=\"\(esc(name))\" data-state=\"\(esc(state))\">"
            body +=
                "<rect class=\"row-bg\" x=\"0\" y=\"\(f(y))\" width=\"\(f(labelWidth + chartWidth))\" height=\"\(f(hostH))\" fill=\"\(rows % 2 == 0 ? "#f7f7f7" : "#ffffff")\"/>"
            body +=
                "<text class=\"host-label\" x=\"6\" y=\"\(f(y + 17))\">\(esc(name))\(state == "up" ? "" : " (\(esc(state)))")</text>"
            for (b, track) in placed {
                body += bar(b, x0: x(b.start), x1: x(b.end), y: y + 3 + Double(track) * trackH, h: trackH - 2)
            }
            body += "</g>"
            y += hostH
            rows += 1
            for (gi, model) in gpus.enumerated() {
                let slices = models.model(named: model)?.memorySlices ?? 1
                let laneH = Double(slices) * sliceHeight + 4
                body +=
                    "<g class=\"gpu-lane\" data-host=\"\(esc(name))\" data-gpu=\"\(gi)\" data-model=\"\(esc(model))\">"
                body +=
                    "<rect class=\"row-bg\" x=\"0\" y=\"\(f(y))\" width=\"\(f(labelWidth + chartWidth))\" height=\"\(f(laneH))\" fill=\"#eef2f7\"/>"
                body +=
                    "<text class=\"lane-label\" x=\"20\" y=\"\(f(y + min(laneH - 4, 16)))\">gpu \(gi) · \(esc(model))</text>"
                for s in 1..<max(slices, 1) {
                    let ly = y + 2 + Double(s) * sliceHeight
                    body +=
                        "<line x1=\"\(f(labelWidth))\" y1=\"\(f(ly))\" x2=\"\(f(labelWidth + chartWidth))\" y2=\"\(f(ly))\" stroke=\"#dde3ea\" stroke-width=\"0.5\"/>"
                }
                for b in allocs where b.alloc["gpu"]?.intValue == Int64(gi) {
                    let slot = Double(b.alloc["slot"]?.intValue ?? 0)
                    let size = Double(b.alloc["size"]?.intValue ?? 1)
                    body += bar(
                        b, x0: x(b.start), x1: x(b.end), y: y + 2 + slot * sliceHeight, h: size * sliceHeight - 1)
                }
                body += "</g>"
                y += laneH
                rows += 1
            }
        }
        if rows == 0 {
            body += "<text x=\"\(f(labelWidth + 10))\" y=\"\(f(y + 20))\">no hosts</text>"
            y += rowHeight
        }
        let height = y + 4

        // Time axis: the coarsest step that still gives a handful of ticks.
        var axis = "<g class=\"axis\">"
        let steps: [Int64] = [
            3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 2 * 86_400, 7 * 86_400, 30 * 86_400, 365 * 86_400,
        ]
        let step = steps.first { Double($0) * 12 >= span } ?? steps.last!
        var t = (from.seconds / step + (from.seconds % step == 0 ? 0 : 1)) * step
        while t <= to.seconds {
            let tx = x(t)
            let label = Timestamp(seconds: t).rfc3339
            let text =
                step >= 86_400
                ? String(label.prefix(10)) : String(label.dropFirst(5).prefix(11).map { $0 == "T" ? " " : $0 })
            axis +=
                "<line x1=\"\(f(tx))\" y1=\"\(f(axisHeight - 6))\" x2=\"\(f(tx))\" y2=\"\(f(height))\" stroke=\"#cccccc\" stroke-width=\"0.5\"/>"
            if tx + 70 <= labelWidth + chartWidth + 10 {
                axis += "<text class=\"tick\" x=\"\(f(tx + 2))\" y=\"\(f(axisHeight - 10))\">\(esc(text))</text>"
            }
            t += step
        }
        axis += "</g>"
        var nowLine = ""
        if now >= from && now <= to {
            nowLine =
                "<line class=\"now\" x1=\"\(f(x(now.seconds)))\" y1=\"\(f(axisHeight - 6))\" x2=\"\(f(x(now.seconds)))\" y2=\"\(f(height))\" stroke=\"#d32f2f\" stroke-width=\"1.5\"><title>now \(now.rfc3339)</title></line>"
        }
        let svgW = labelWidth + chartWidth + 10
        let svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"gantt\" width=\"\(f(svgW))\" height=\"\(f(height))\" viewBox=\"0 0 \(f(svgW)) \(f(height))\" font-family=\"sans-serif\" font-size=\"11\">"
            + axis + body + nowLine + "</svg>"

        let span7 = to.seconds - from.seconds
        let prev = "/calendar?from=\(Timestamp(seconds: from.seconds - span7).rfc3339)&to=\(from.rfc3339)"
        let next = "/calendar?from=\(to.rfc3339)&to=\(Timestamp(seconds: to.seconds + span7).rfc3339)"
        var legend = "<p class=\"legend\">"
        for (label, color) in [
            ("host", colors["host"]!), ("gpu", colors["gpu"]!), ("instance", colors["instance"]!),
            ("preemptible", colors["preemptible"]!),
        ] {
            legend +=
                "<span><svg width=\"12\" height=\"12\"><rect width=\"12\" height=\"12\" fill=\"\(color)\"/></svg> \(label)</span> "
        }
        legend += "· pending: light, active: solid, ended: faded, error: red outline</p>"
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <title>Berth calendar \(esc(from.rfc3339)) to \(esc(to.rfc3339))</title>
            <style>
            body{font-family:sans-serif;margin:16px;color:#222}
            h1{font-size:18px;margin:0 0 6px}
            p{margin:4px 0 10px;font-size:13px}
            .legend span{margin-right:10px}
            .host-label{font-weight:bold}
            .lane-label{fill:#555}
            .bar-label{fill:#fff;pointer-events:none}
            a{color:#1565c0}
            </style></head>
            <body>
            <h1>Berth calendar</h1>
            <p>From <time>\(esc(from.rfc3339))</time> to <time>\(esc(to.rfc3339))</time> (now \(esc(now.rfc3339))) · <a href="\(esc(prev))">earlier</a> · <a href="\(esc(next))">later</a></p>
            \(legend)
            \(svg)
            </body></html>

            """
    }

    static let colors: [String: String] = [
        "host": "#2e7d32", "gpu": "#6a1b9a", "instance": "#1565c0", "preemptible": "#ef6c00",
    ]

    static func bar(_ b: Bar, x0: Double, x1: Double, y: Double, h: Double) -> String {
        let o = b.alloc
        let kind = o["kind"]?.stringValue ?? "host"
        let status = o["status"]?.stringValue ?? "pending"
        let leaseName = o["lease_name"]?.stringValue
        let id = o["lease_id"]?.stringValue ?? o["preemptible_id"]?.stringValue ?? ""
        let project = o["project_id"]?.stringValue ?? ""
        var title = kind == "preemptible" ? "preemptible \(id)" : "\(leaseName ?? "(unnamed)") (\(id))"
        title += " · project \(project) · \(kind) · \(status)"
        if let p = o["profile"]?.stringValue { title += " · \(p)" }
        if let g = o["gpu"]?.intValue, let s = o["slot"]?.intValue { title += " · gpu \(g) slot \(s)" }
        if let n = o["slots"]?.intValue, kind == "instance" { title += " · \(n) slot\(n == 1 ? "" : "s")" }
        title += " · \(o["start"]?.stringValue ?? "?") to \(o["end"]?.stringValue ?? "open end")"
        let opacity: String
        switch status {
        case "pending": opacity = "0.55"
        case "ended", "deleted", "preempted": opacity = "0.3"
        default: opacity = "1"
        }
        let stroke = status == "error" ? " stroke=\"#d32f2f\" stroke-width=\"2\"" : ""
        let w = max(x1 - x0, 1)
        var s =
            "<g class=\"alloc\" data-kind=\"\(esc(kind))\" data-status=\"\(esc(status))\" data-lease-id=\"\(esc(id))\""
        if let leaseName { s += " data-lease-name=\"\(esc(leaseName))\"" }
        s += "><title>\(esc(title))</title>"
        s +=
            "<rect x=\"\(f(x0))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(max(h, 1)))\" rx=\"2\" fill=\"\(colors[kind] ?? "#555555")\" fill-opacity=\"\(opacity)\"\(stroke)/>"
        if w > 40 && h >= 12 {
            let label = kind == "preemptible" ? "preemptible" : (leaseName ?? String(id.prefix(8)))
            let maxChars = Int((w - 6) / 6.5)
            let shown = label.count > maxChars ? String(label.prefix(max(maxChars - 1, 1))) + "…" : label
            s += "<text class=\"bar-label\" x=\"\(f(x0 + 3))\" y=\"\(f(y + h / 2 + 4))\">\(esc(shown))</text>"
        }
        return s + "</g>"
    }

    /// Escapes text and attribute values for HTML and SVG.
    static func esc(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // Control characters are not allowed in XML text: drop them.
                if ch.value < 0x20 && ch != "\n" && ch != "\t" { continue }
                out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    static func f(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int64(r)) : String(r)
    }
}
