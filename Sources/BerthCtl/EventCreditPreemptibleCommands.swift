import ArgumentParser
import BerthClient
import BerthJSON

// MARK: - Events

struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Durable events and live notifications.",
        subcommands: [EventsList.self, EventsSubscribe.self])
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

struct EventsList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Stored events in order (events.list).")
    @OptionGroup var global: GlobalOptions
    @Option(
        name: .customLong("after-seq"), help: ArgumentHelp("Only events after this sequence number.", valueName: "seq"))
    var afterSeq: Int?
    @Option(help: ArgumentHelp("At most this many events.", valueName: "n")) var limit: Int?
    @Option(
        name: .customLong("type"),
        help: ArgumentHelp("Only these types, e.g. 'lease.*' (repeatable).", valueName: "type"))
    var types: [String] = []
    @Flag(help: "Follow next_cursor and list every page.") var all = false

    func run() throws {
        var params: JSON = [:]
        params.set("after_seq", afterSeq.json)
        params.set("limit", limit.json)
        if !types.isEmpty { params.set("types", .array(types.map { .string($0) })) }
        let result = try global.callList(.eventsList, params, all: all, cursorParam: "after_seq")
        global.emit(result) { r in
            Output.printTable(["SEQ", "TYPE", "AT", "DETAILS"], Views.items(r), noun: "events") { e in
                let rest = e.objectValue?.filter { !["seq", "type", "at"].contains($0.key) } ?? [:]
                return [
                    Output.text(e["seq"]), Output.text(e["type"]), Output.text(e["at"]),
                    rest.isEmpty ? "" : Output.inline(rest, separator: " "),
                ]
            }
            Output.noteCursor(r, option: "--after-seq")
        }
    }
}

struct EventsSubscribe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscribe",
        abstract: "Print each event notification as it arrives, until interrupted (events.subscribe).",
        discussion: "With --json each event is printed as one line of compact JSON (JSON Lines).")
    @OptionGroup var global: GlobalOptions
    @Option(
        name: .customLong("type"),
        help: ArgumentHelp("Only these types, e.g. 'lease.*' (repeatable).", valueName: "type"))
    var types: [String] = []
    @Option(help: ArgumentHelp("Exit after this many events.", valueName: "n")) var count: Int?

    func run() throws {
        let connection = try global.connect()
        defer { connection.close() }
        var params: JSON = [:]
        if !types.isEmpty { params.set("types", .array(types.map { .string($0) })) }
        let result = try connection.call(.eventsSubscribe, params)
        Output.err(
            "subscribed (subscription \(Output.text(result["subscription"]))); waiting for events, Ctrl-C to stop")
        var seen = 0
        while count.map({ seen < $0 }) ?? true {
            guard let notification = try connection.nextNotification() else {
                throw BerthClientError.io("berthd closed the connection")
            }
            let event = notification["params"] ?? .null
            Output.out(global.json ? event.serialized() : Views.eventLine(event))
            Output.flush()
            seen += 1
        }
    }
}

// MARK: - Credits

struct CreditsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credits", abstract: "Grant credits and read balances and ledgers.",
        subcommands: [CreditsGrant.self, CreditsBalance.self, CreditsLedger.self])
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

/// A credit amount: an integer or a decimal number.
struct Amount: ExpressibleByArgument, Sendable {
    var value: JSON
    init?(argument: String) {
        if let i = Int64(argument) {
            value = .int(i)
        } else if let d = Double(argument), d.isFinite {
            value = .double(d)
        } else {
            return nil
        }
    }
}

struct CreditsGrant: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grant",
        abstract: "Grant credits to a project (credits.grant, admin).",
        discussion: "Example: berthctl credits grant p1 --resource-class gpu_slice_hours --amount 800")
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("Project to credit.", valueName: "project_id")) var project: String
    @Option(
        name: [.customLong("resource-class"), .customLong("class")],
        help: ArgumentHelp("host_hours, gpu_slice_hours or vcpu_hours.", valueName: "class"))
    var resourceClass: String
    @Option(help: ArgumentHelp("How many credits.", valueName: "n")) var amount: Amount
    @Option(name: .customLong("valid-from"), help: ArgumentHelp("Usable from this time.", valueName: "time"))
    var validFrom: String?
    @Option(name: .customLong("valid-to"), help: ArgumentHelp("Usable until this time.", valueName: "time"))
    var validTo: String?
    @Option(help: "A note for the ledger.") var note: String?
    @OptionGroup var idempotency: IdempotencyOption

    func run() throws {
        var params: JSON = [
            "project_id": .string(project), "resource_class": .string(resourceClass), "amount": amount.value,
        ]
        params.set("valid_from", validFrom.json)
        params.set("valid_to", validTo.json)
        params.set("note", note.json)
        idempotency.apply(to: &params)
        global.emitBlock(try global.call(.creditsGrant, params))
    }
}

struct CreditsBalance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balance", abstract: "A project's credits per resource class (credits.balance).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("Project.", valueName: "project_id")) var project: String

    func run() throws {
        let result = try global.call(.creditsBalance, ["project_id": .string(project)])
        global.emit(result) { r in
            let classes = (r.objectValue ?? [:]).filter { $0.value.objectValue != nil }
            if classes.isEmpty {
                Output.err("no credits for \(project)")
                return
            }
            let rows = classes.keys.sorted().map { c -> [String] in
                let b = classes[c]!
                return [c, Output.text(b["granted"]), Output.text(b["spent"]), Output.text(b["available"])]
            }
            for l in Output.table(["CLASS", "GRANTED", "SPENT", "AVAILABLE"], rows) { Output.out(l) }
        }
    }
}

struct CreditsLedger: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "A project's grants, charges and refunds (credits.ledger).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("Project.", valueName: "project_id")) var project: String
    @OptionGroup var paging: PagingOptions

    func run() throws {
        var params: JSON = ["project_id": .string(project)]
        paging.apply(to: &params)
        let result = try global.callList(.creditsLedger, params, all: paging.all)
        global.emit(result) { r in
            let items = Views.items(r)
            if items.isEmpty {
                Output.err("no ledger entries for \(project)")
            } else {
                let preferred = [
                    "id", "at", "created_at", "kind", "type", "resource_class", "amount", "lease_id", "valid_from",
                    "valid_to", "note",
                ]
                for l in Views.autoTable(items, preferred: preferred) { Output.out(l) }
            }
            Output.noteCursor(r)
        }
    }
}

// MARK: - Preemptibles

struct PreemptibleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preemptible", abstract: "Preemptible instances on unreserved capacity.",
        subcommands: [
            PreemptibleCreate.self, PreemptibleGet.self, PreemptibleList.self, PreemptibleDelete.self,
            PreemptibleHorizon.self,
        ])
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

struct PreemptibleCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Place a preemptible instance (preemptible.create).")
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Project.", valueName: "project_id")) var project: String
    @Option(help: "vCPUs.") var vcpus: Int
    @Option(name: .customLong("memory-mb"), help: "Memory in MiB.") var memoryMB: Int
    @Option(name: .customLong("disk-gb"), help: "Disk in GB.") var diskGB: Int
    @Option(name: .customLong("gpu-profile"), help: ArgumentHelp("GPU slice profile.", valueName: "profile"))
    var gpuProfile: String?
    @Option(
        name: .customLong("min-lifetime"), help: ArgumentHelp("Guaranteed lifetime (e.g. 1h).", valueName: "duration"))
    var minLifetime: Seconds?
    @Option(
        help: ArgumentHelp("Nova boot fields as a JSON object (- reads stdin, @file a file).", valueName: "json"),
        transform: parseJSONArgument)
    var server: JSON?
    @Option(
        name: .customLong("slurm-node"), help: ArgumentHelp("The Slurm node this instance becomes.", valueName: "name"))
    var slurmNode: String?
    @OptionGroup var idempotency: IdempotencyOption

    func run() throws {
        var params: JSON = [
            "project_id": .string(project), "vcpus": JSON(vcpus), "memory_mb": JSON(memoryMB), "disk_gb": JSON(diskGB),
        ]
        params.set("gpu_profile", gpuProfile.json)
        params.set("min_lifetime_s", minLifetime.json)
        params.set("server", server)
        params.set("slurm_node", slurmNode.json)
        idempotency.apply(to: &params)
        global.emitBlock(try global.call(.preemptibleCreate, params), order: Views.preemptibleOrder)
    }
}

struct PreemptibleGet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Show a preemptible (preemptible.get).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Preemptible id.") var id: String
    func run() throws {
        global.emitBlock(try global.call(.preemptibleGet, ["id": .string(id)]), order: Views.preemptibleOrder)
    }
}

struct PreemptibleList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List preemptibles (preemptible.list).")
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Only this project's.", valueName: "project_id")) var project: String?
    @Option(help: ArgumentHelp("Only those on this host.", valueName: "name")) var host: String?
    @Option(help: ArgumentHelp("pending, running, preempting, preempted or ended.", valueName: "status"))
    var status: String?
    @Option(
        name: .customLong("slurm-node"), help: ArgumentHelp("Only those backing this Slurm node.", valueName: "name"))
    var slurmNode: String?
    @OptionGroup var paging: PagingOptions

    func run() throws {
        var params: JSON = [:]
        params.set("project_id", project.json)
        params.set("host", host.json)
        params.set("status", status.json)
        params.set("slurm_node", slurmNode.json)
        paging.apply(to: &params)
        let result = try global.callList(.preemptibleList, params, all: paging.all)
        global.emit(result) { r in
            let headers = ["ID", "PROJECT", "HOST", "STATUS", "GUARANTEED_UNTIL", "PREEMPT_AT"]
            Output.printTable(headers, Views.items(r), noun: "preemptibles") {
                [
                    Output.text($0["id"]), Output.text($0["project_id"]), Output.text($0["host"]),
                    Output.text($0["status"]), Output.text($0["guaranteed_until"]), Output.text($0["preempt_at"]),
                ]
            }
            Output.noteCursor(r)
        }
    }
}

struct PreemptibleDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "End a preemptible (preemptible.delete).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Preemptible id.") var id: String
    @OptionGroup var idempotency: IdempotencyOption
    func run() throws {
        var params: JSON = ["id": .string(id)]
        idempotency.apply(to: &params)
        let result = try global.call(.preemptibleDelete, params)
        global.emit(result) { r in
            if let o = r.objectValue, !o.isEmpty {
                for l in Output.block(r, order: Views.preemptibleOrder) { Output.out(l) }
            } else {
                Output.out("deleted preemptible \(id)")
            }
        }
    }
}

struct PreemptibleHorizon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "horizon",
        abstract: "When this capacity will next be needed by a reservation (preemptible.horizon).")
    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("A host.", valueName: "name")) var host: String?
    @Option(help: ArgumentHelp("A preemptible.", valueName: "id")) var id: String?

    func validate() throws {
        if host != nil && id != nil { throw ValidationError("give either --host or --id, not both") }
    }

    func run() throws {
        var params: JSON = [:]
        params.set("host", host.json)
        params.set("id", id.json)
        let result = try global.call(.preemptibleHorizon, params)
        global.emit(result) { r in
            if let at = r["preempt_at"], !at.isNull {
                Output.out("preempt_at: \(Output.text(at))")
            } else {
                Output.out("preempt_at: - (no reservation needs this capacity)")
            }
        }
    }
}
