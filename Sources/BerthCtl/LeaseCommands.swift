import ArgumentParser
import BerthClient
import BerthJSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

struct LeaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease",
        abstract: "Create, inspect, change and delete leases.",
        subcommands: [LeaseCreate.self, LeaseGet.self, LeaseList.self, LeaseUpdate.self, LeaseDelete.self]
    )
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

/// The daemon's current time: `clock.now` when it runs a manual clock, else this machine's clock.
func daemonNow(_ connection: BerthConnection) throws -> Int64 {
    do {
        let r = try connection.call(.clockNow)
        if let s = r["now"]?.stringValue, let t = RFC3339.parse(s) { return t }
        throw BerthClientError.protocolViolation("clock.now returned \(r.serialized())")
    } catch let e as RPCErrorResponse where e.errorCode == .methodNotFound {
        return Int64(time(nil))
    }
}

func checkStartForDuration(_ start: String) throws {
    if start != "now" && RFC3339.parse(start) == nil {
        throw ValidationError("--start must be 'now' or an RFC 3339 time (2030-01-01T10:00:00Z) to use --duration")
    }
}

/// `end` for `--duration`: `start` plus the duration, `start` being `now` or RFC 3339.
func endFor(start: String, duration: Int64, connection: BerthConnection) throws -> String {
    let base: Int64
    if start == "now" {
        base = try daemonNow(connection)
    } else if let t = RFC3339.parse(start) {
        base = t
    } else {
        throw ValidationError("--start must be 'now' or an RFC 3339 time to use --duration")
    }
    return RFC3339.format(base + duration)
}

func printLease(_ lease: JSON, global: GlobalOptions, dryRun: Bool) {
    global.emit(lease) { l in
        if dryRun { Output.out("dry run: nothing was stored or charged") }
        for line in Output.block(l, order: Views.leaseOrder) { Output.out(line) }
    }
}

struct LeaseCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Reserve resources for a time window (lease.create).",
        discussion: """
            Give the resources either as one reservation with options (--hosts, --hosts-min/--hosts-max, \
            --gpu with --count, or --vcpus/--memory-mb/--disk-gb with --count) or as --reservations JSON.

            Examples:
              berthctl lease create --name train --project p1 \\
                --duration 2h --hosts 2 --property rack=r1
              berthctl lease create --name mig --project p1 \\
                --start 2030-01-01T10:00:00Z --end 2030-01-01T12:00:00Z \\
                --gpu 1g.5gb --count 3 --gpu-model A100-40GB
            """)
    @OptionGroup var global: GlobalOptions

    @Option(help: "Lease name.") var name: String
    @Option(help: ArgumentHelp("Project the lease belongs to and is charged to.", valueName: "project_id"))
    var project: String
    @Option(help: ArgumentHelp("User the lease is for.", valueName: "user_id")) var user: String?
    @Option(help: ArgumentHelp("'now' or an RFC 3339 time.", valueName: "time")) var start: String = "now"
    @Option(help: ArgumentHelp("RFC 3339 end time.", valueName: "time")) var end: String?
    @Option(help: ArgumentHelp("Length instead of --end (e.g. 2h, 1d).", valueName: "duration")) var duration: Seconds?
    @Option(
        name: .customLong("before-end"), help: ArgumentHelp("Warn this long before the end.", valueName: "duration"))
    var beforeEnd: Seconds?
    @OptionGroup var reservation: ReservationOptions
    @Flag(name: .customLong("dry-run"), help: "Show placement and cost without storing or charging anything.")
    var dryRun = false
    @OptionGroup var idempotency: IdempotencyOption

    func validate() throws {
        if (end == nil) == (duration == nil) { throw ValidationError("give exactly one of --end and --duration") }
        if !reservation.isGiven { throw ValidationError("which resources? \(ReservationOptions.hint)") }
        if duration != nil { try checkStartForDuration(start) }
    }

    func run() throws {
        let connection = try global.connect()
        defer { connection.close() }
        var params: JSON = ["name": .string(name), "project_id": .string(project), "start": .string(start)]
        params.set("user_id", user.json)
        if let duration {
            params.set("end", .string(try endFor(start: start, duration: duration.value, connection: connection)))
        } else {
            params.set("end", end.json)
        }
        params.set("before_end_s", beforeEnd.json)
        params.set("reservations", reservation.reservations)
        if dryRun { params.set("dry_run", true) }
        idempotency.apply(to: &params)
        printLease(try connection.call(.leaseCreate, params), global: global, dryRun: dryRun)
    }
}

struct LeaseGet: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show a lease (lease.get).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Lease id.") var id: String

    func run() throws {
        printLease(try global.call(.leaseGet, ["id": .string(id)]), global: global, dryRun: false)
    }
}

struct LeaseList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List leases (lease.list).")
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Only this project's leases.", valueName: "project_id")) var project: String?
    @Option(help: ArgumentHelp("pending, active, ended, deleted or error.", valueName: "status")) var status: String?
    @Option(help: ArgumentHelp("Only leases that end after this time.", valueName: "time")) var from: String?
    @Option(help: ArgumentHelp("Only leases that start before this time.", valueName: "time")) var to: String?
    @OptionGroup var paging: PagingOptions

    func run() throws {
        var params: JSON = [:]
        params.set("project_id", project.json)
        params.set("status", status.json)
        params.set("from", from.json)
        params.set("to", to.json)
        paging.apply(to: &params)
        let result = try global.callList(.leaseList, params, all: paging.all)
        global.emit(result) { r in
            Output.printTable(Views.leaseHeaders, Views.items(r), noun: "leases", row: Views.leaseRow)
            Output.noteCursor(r)
        }
    }
}

struct LeaseUpdate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Extend, shorten, move, grow or shrink a lease (lease.update).",
        discussion: """
            Reservation options (--hosts, --gpu ..., --reservations) replace the lease's reservations. \
            --duration sets the end relative to --start, or to the lease's current start.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Lease id.") var id: String
    @Option(help: "New name.") var name: String?
    @Option(help: ArgumentHelp("New start: 'now' or an RFC 3339 time.", valueName: "time")) var start: String?
    @Option(help: ArgumentHelp("New RFC 3339 end time.", valueName: "time")) var end: String?
    @Option(help: ArgumentHelp("New length instead of --end (e.g. 4h).", valueName: "duration")) var duration: Seconds?
    @Option(
        name: .customLong("before-end"), help: ArgumentHelp("Warn this long before the end.", valueName: "duration"))
    var beforeEnd: Seconds?
    @OptionGroup var reservation: ReservationOptions
    @Flag(name: .customLong("dry-run"), help: "Show the outcome without storing or charging anything.")
    var dryRun = false
    @OptionGroup var idempotency: IdempotencyOption

    func validate() throws {
        if end != nil && duration != nil { throw ValidationError("give either --end or --duration, not both") }
        if duration != nil, let start { try checkStartForDuration(start) }
        if name == nil && start == nil && end == nil && duration == nil && beforeEnd == nil && !reservation.isGiven {
            throw ValidationError(
                "nothing to change: give at least one of --name, --start, --end, --duration, "
                    + "--before-end or reservation options")
        }
    }

    func run() throws {
        let connection = try global.connect()
        defer { connection.close() }
        var params: JSON = ["id": .string(id)]
        params.set("name", name.json)
        params.set("start", start.json)
        params.set("end", end.json)
        if let duration {
            let from: String
            if let start {
                from = start
            } else {
                let lease = try connection.call(.leaseGet, ["id": .string(id)])
                guard let s = lease["start"]?.stringValue else {
                    throw BerthClientError.protocolViolation("lease.get returned no start")
                }
                from = s
            }
            params.set("end", .string(try endFor(start: from, duration: duration.value, connection: connection)))
        }
        params.set("before_end_s", beforeEnd.json)
        params.set("reservations", reservation.reservations)
        if dryRun { params.set("dry_run", true) }
        idempotency.apply(to: &params)
        printLease(try connection.call(.leaseUpdate, params), global: global, dryRun: dryRun)
    }
}

struct LeaseDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a lease; an active lease ends now (lease.delete).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Lease id.") var id: String
    @OptionGroup var idempotency: IdempotencyOption

    func run() throws {
        var params: JSON = ["id": .string(id)]
        idempotency.apply(to: &params)
        let result = try global.call(.leaseDelete, params)
        global.emit(result) { r in
            Output.out("deleted lease \(id)")
            if let refund = r["refund"]?.objectValue, !refund.isEmpty {
                Output.out("refund: \(Output.inline(refund))")
            }
        }
    }
}
