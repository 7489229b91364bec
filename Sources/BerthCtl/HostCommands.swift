import ArgumentParser
import BerthClient
import BerthJSON

struct HostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "Register, inspect, change and remove hosts (operator role).",
        subcommands: [HostCreate.self, HostGet.self, HostList.self, HostUpdate.self, HostDelete.self]
    )
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}

enum Reservability: String, EnumerableFlag {
    case reservable, notReservable

    static func help(for value: Reservability) -> ArgumentHelp? {
        switch value {
        case .reservable: return "Leases may allocate this host."
        case .notReservable: return "Leases may not allocate this host."
        }
    }
}

/// Host fields shared by create and update.
struct HostFields: ParsableArguments {
    @Option(
        name: .customLong("gpu"),
        help: ArgumentHelp(
            "A GPU model, once per GPU (e.g. A100-40GB); 4xA100-40GB stands for four.", valueName: "model"))
    var gpus: [String] = []

    @Option(name: .customLong("property"), help: ArgumentHelp("A host property, repeatable.", valueName: "key=value"))
    var properties: [KeyValue] = []

    @Option(
        name: .customLong("properties"),
        help: ArgumentHelp("All properties as a JSON object (- reads stdin, @file a file).", valueName: "json"),
        transform: parseJSONArgument)
    var propertiesJSON: JSON?

    func validate() throws {
        if propertiesJSON != nil && !properties.isEmpty {
            throw ValidationError("give either --property or --properties, not both")
        }
        if let p = propertiesJSON, p.objectValue == nil {
            throw ValidationError("--properties must be a JSON object")
        }
    }

    /// `[{"model": ...}]`, expanding `4xMODEL`.
    var gpuList: JSON {
        var list: [JSON] = []
        for g in gpus {
            if let x = g.firstIndex(of: "x"), x != g.startIndex, let n = Int(g[..<x]), n > 0,
                g.index(after: x) != g.endIndex
            {
                let model = String(g[g.index(after: x)...])
                list += Array(repeating: ["model": .string(model)], count: n)
            } else {
                list.append(["model": .string(g)])
            }
        }
        return .array(list)
    }

    var propertiesValue: JSON? {
        if let propertiesJSON { return propertiesJSON }
        if properties.isEmpty { return Optional<JSON>.none }
        return properties.jsonObject
    }
}

struct HostCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Register a host (host.create).")
    @OptionGroup var global: GlobalOptions

    @Argument(help: "The host's name (its identifier).") var name: String
    @Option(help: "Number of vCPUs.") var vcpus: Int
    @Option(name: .customLong("memory-mb"), help: "Memory in MiB.") var memoryMB: Int
    @Option(name: .customLong("disk-gb"), help: "Disk in GB.") var diskGB: Int
    @OptionGroup var fields: HostFields
    @Flag(name: .customLong("not-reservable"), help: "Register the host without letting leases allocate it.")
    var notReservable = false
    @OptionGroup var idempotency: IdempotencyOption

    func run() throws {
        var params: JSON = [
            "name": .string(name), "vcpus": JSON(vcpus), "memory_mb": JSON(memoryMB), "disk_gb": JSON(diskGB),
        ]
        if !fields.gpus.isEmpty { params.set("gpus", fields.gpuList) }
        params.set("properties", fields.propertiesValue)
        if notReservable { params.set("reservable", false) }
        idempotency.apply(to: &params)
        global.emitBlock(try global.call(.hostCreate, params), order: Views.hostOrder)
    }
}

struct HostGet: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show a host (host.get).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Host name.") var name: String

    func run() throws {
        global.emitBlock(try global.call(.hostGet, ["name": .string(name)]), order: Views.hostOrder)
    }
}

struct HostList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List hosts (host.list).")
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("property"), help: ArgumentHelp("Only hosts with this property.", valueName: "key=value"))
    var properties: [KeyValue] = []

    func run() throws {
        var params: JSON = [:]
        if !properties.isEmpty { params.set("properties", properties.jsonObject) }
        let result = try global.call(.hostList, params)
        global.emit(result) { r in
            Output.printTable(Views.hostHeaders, Views.items(r), noun: "hosts", row: Views.hostRow)
            Output.noteCursor(r)
        }
    }
}

struct HostUpdate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Change a host (host.update).",
        discussion: "Setting --state down or maintenance heals the reservations on the host.")
    @OptionGroup var global: GlobalOptions

    @Argument(help: "Host name.") var name: String
    @Option(help: "Number of vCPUs.") var vcpus: Int?
    @Option(name: .customLong("memory-mb"), help: "Memory in MiB.") var memoryMB: Int?
    @Option(name: .customLong("disk-gb"), help: "Disk in GB.") var diskGB: Int?
    @OptionGroup var fields: HostFields
    @Flag(name: .customLong("no-gpus"), help: "Remove every GPU from the host.") var noGPUs = false
    @Option(help: ArgumentHelp("up, down or maintenance.", valueName: "state")) var state: String?
    @Flag var reservability: Reservability?
    @OptionGroup var idempotency: IdempotencyOption

    func validate() throws {
        if noGPUs && !fields.gpus.isEmpty { throw ValidationError("give either --gpu or --no-gpus, not both") }
        if params.objectValue?.count == 1 {
            throw ValidationError("nothing to change: give at least one field to update")
        }
    }

    var params: JSON {
        var params: JSON = ["name": .string(name)]
        params.set("vcpus", vcpus.json)
        params.set("memory_mb", memoryMB.json)
        params.set("disk_gb", diskGB.json)
        if noGPUs { params.set("gpus", []) } else if !fields.gpus.isEmpty { params.set("gpus", fields.gpuList) }
        params.set("properties", fields.propertiesValue)
        params.set("state", state.json)
        if let reservability { params.set("reservable", .bool(reservability == .reservable)) }
        return params
    }

    func run() throws {
        var params = self.params
        idempotency.apply(to: &params)
        global.emitBlock(try global.call(.hostUpdate, params), order: Views.hostOrder)
    }
}

struct HostDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Remove a host (host.delete); refused while it holds current or future allocations.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Host name.") var name: String
    @OptionGroup var idempotency: IdempotencyOption

    func run() throws {
        var params: JSON = ["name": .string(name)]
        idempotency.apply(to: &params)
        let result = try global.call(.hostDelete, params)
        global.emit(result) { _ in Output.out("deleted host \(name)") }
    }
}
