import ArgumentParser
import BerthClient
import BerthJSON

struct AvailabilityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "availability", abstract: "Find when resources are free.", subcommands: [AvailabilityFind.self])
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

struct AvailabilityFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "The earliest windows at which the whole request fits (availability.find).",
        discussion: "Example: berthctl availability find --hosts 2 --duration 4h --earliest 2030-01-01T00:00:00Z")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var reservation: ReservationOptions
    @Option(help: ArgumentHelp("How long the window must be (e.g. 4h).", valueName: "duration")) var duration: Seconds
    @Option(help: ArgumentHelp("Not before this time.", valueName: "time")) var earliest: String?
    @Option(help: ArgumentHelp("Not after this time.", valueName: "time")) var latest: String?
    @Option(help: ArgumentHelp("At most this many windows.", valueName: "n")) var limit: Int?

    func validate() throws {
        if !reservation.isGiven { throw ValidationError("which resources? \(ReservationOptions.hint)") }
    }

    func run() throws {
        var params: JSON = ["duration_s": .int(duration.value)]
        params.set("reservations", reservation.reservations)
        params.set("earliest", earliest.json)
        params.set("latest", latest.json)
        params.set("limit", limit.json)
        let result = try global.call(.availabilityFind, params)
        global.emit(result) { r in
            Output.printTable(["START", "END"], Views.items(r), noun: "windows") {
                [Output.text($0["start"]), Output.text($0["end"])]
            }
        }
    }
}

struct CalendarCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calendar",
        abstract: "Allocations per host overlapping a window, as a terminal Gantt chart (calendar.get).",
        discussion: """
            One row per host (whole-host, instance and preemptible allocations) and, on GPU hosts, one \
            row per GPU and MIG slot range (s0-7) in use; a letter per lease or preemptible, explained \
            in the legend; '.' is free. Allocations that would share a cell get an extra lane. \
            --table prints one line per allocation instead, --json the raw result.
            Example: berthctl calendar --from 2030-01-01T00:00:00Z --to 2030-01-02T00:00:00Z --width 120
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Window start (RFC 3339).", valueName: "time")) var from: String
    @Option(help: ArgumentHelp("Window end (RFC 3339).", valueName: "time")) var to: String
    @Option(name: .customLong("host"), help: ArgumentHelp("Only this host (repeatable).", valueName: "name"))
    var hosts: [String] = []
    @Option(
        help: ArgumentHelp(
            "Chart width in characters (default: $COLUMNS, else the terminal's, else 100).", valueName: "n"))
    var width: Int?
    @Flag(help: "One line per allocation instead of the chart.") var table = false

    func validate() throws {
        if let width, width < 20 { throw ValidationError("--width must be at least 20") }
    }

    func run() throws {
        var params: JSON = ["from": .string(from), "to": .string(to)]
        if !hosts.isEmpty { params.set("hosts", .array(hosts.map { .string($0) })) }
        let connection = try global.connect()
        defer { connection.close() }
        let result = try connection.call(.calendarGet, params)
        if global.json {
            Output.out(Output.pretty(result))
            return
        }
        if table {
            guard let rows = Views.calendarRows(result) else {
                Output.out(Output.pretty(result))
                return
            }
            if rows.isEmpty {
                Output.err("no allocations between \(from) and \(to)")
                return
            }
            for l in Output.table(["HOST", "LEASE", "KIND", "START", "END"], rows) { Output.out(l) }
            return
        }
        // GPUs per host, so idle GPUs get a lane; host.list is admin-only, and without it the chart
        // shows the GPUs the allocations use.
        var gpuCounts: [String: Int] = [:]
        if let list = try? connection.call(.hostList, [:]) {
            for h in Views.items(list) {
                gpuCounts[Output.text(h["name"])] = h["gpus"]?.arrayValue?.count ?? 0
            }
        }
        for l in Gantt.render(result, gpuCounts: gpuCounts, width: Gantt.terminalWidth(width)) { Output.out(l) }
    }
}

struct ActionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "actions", abstract: "Outbound actions to the cloud.", subcommands: [ActionsList.self])
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

struct ActionsList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List actions (actions.list).")
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("pending, running, done or failed.", valueName: "status")) var status: String?
    @Option(name: .customLong("lease"), help: ArgumentHelp("Only this lease's actions.", valueName: "lease_id"))
    var leaseID: String?
    @OptionGroup var paging: PagingOptions

    func run() throws {
        var params: JSON = [:]
        params.set("status", status.json)
        params.set("lease_id", leaseID.json)
        paging.apply(to: &params)
        let result = try global.callList(.actionsList, params, all: paging.all)
        global.emit(result) { r in
            let items = Views.items(r)
            if items.isEmpty {
                Output.err("no actions found")
            } else {
                let preferred = ["id", "kind", "target", "status", "attempts", "due_at", "last_error"]
                for l in Views.autoTable(items, preferred: preferred, onlyPreferred: true) { Output.out(l) }
            }
            Output.noteCursor(r)
        }
    }
}

struct ClockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clock",
        abstract: "Read or move the daemon's manual clock (only with berthd --clock manual).",
        subcommands: [ClockNow.self, ClockSet.self, ClockAdvance.self])
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

func printNow(_ result: JSON, _ global: GlobalOptions) {
    global.emit(result) { Output.out(Output.text($0["now"])) }
}

struct ClockNow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "now", abstract: "The daemon's time (clock.now).")
    @OptionGroup var global: GlobalOptions
    func run() throws { printNow(try global.call(.clockNow), global) }
}

struct ClockSet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Set the time, processing every event due up to it (clock.set).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("RFC 3339 time.", valueName: "time")) var now: String
    func run() throws { printNow(try global.call(.clockSet, ["now": .string(now)]), global) }
}

struct ClockAdvance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "advance", abstract: "Move the time forward, processing every event due (clock.advance).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("How far (e.g. 90, 30m, 2h).", valueName: "duration")) var seconds: Seconds
    func run() throws { printNow(try global.call(.clockAdvance, ["seconds": .int(seconds.value)]), global) }
}

struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "Daemon health (system.health).")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        global.emitBlock(
            try global.call(.systemHealth), order: ["status", "version", "uptime_s", "storage", "adapter"])
    }
}

struct DiscoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discover",
        abstract: "The daemon's methods; the OpenRPC document with --json (rpc.discover).")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        let result = try global.call(.rpcDiscover)
        global.emit(result) { doc in
            let info = doc["info"]
            Output.out(
                "\(Output.text(info?["title"])) \(Output.text(info?["version"])) (OpenRPC \(Output.text(doc["openrpc"])))"
            )
            let methods = doc["methods"]?.arrayValue ?? []
            let rows = methods.map { m in [Output.text(m["name"]), m["summary"]?.stringValue ?? ""] }
            for l in Output.table(["METHOD", "SUMMARY"], rows) { Output.out(l) }
        }
    }
}

struct CallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call any method with raw JSON params and print the result as JSON.",
        discussion: #"Example: berthctl call lease.list '{"status": "active"}'"#)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Method name, e.g. lease.get.") var method: String
    @Argument(
        help: ArgumentHelp("Params as JSON (- reads stdin, @file a file).", valueName: "params-json"),
        transform: parseJSONArgument)
    var params: JSON?
    @Flag(help: "Print the whole response object (jsonrpc, id, result or error).") var response = false

    func run() throws {
        let connection = try global.connect()
        defer { connection.close() }
        if response {
            let reply = try connection.callRaw(method, params)
            Output.out(Output.pretty(reply))
            if let e = reply["error"], !e.isNull { throw ExitCode.failure }
            return
        }
        Output.out(Output.pretty(try connection.call(method, params)))
    }
}
