import ArgumentParser
import BerthClient
import BerthContract
import BerthJSON

/// `--socket` and `--json`, accepted before or after any subcommand.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Path of berthd's socket (default: $BERTH_SOCKET, else \(BerthConnection.defaultSocketPath)).",
            valueName: "path"))
    var socket: String?

    @Flag(name: .long, help: "Print the result as pretty-printed JSON instead of tables.")
    var json = false

    var socketPath: String {
        socket ?? environment("BERTH_SOCKET") ?? BerthConnection.defaultSocketPath
    }

    func connect() throws -> BerthConnection {
        try BerthConnection(socketPath: socketPath)
    }

    /// Opens a connection, makes one call and closes it.
    func call(_ method: RPCMethod, _ params: JSON? = nil) throws -> JSON {
        let connection = try connect()
        defer { connection.close() }
        return try connection.call(method, params)
    }

    /// Prints `result` as JSON with `--json`, else as `human` renders it.
    func emit(_ result: JSON, human: (JSON) -> Void) {
        if json {
            Output.out(Output.pretty(result))
        } else {
            human(result)
        }
    }

    /// Prints `result` as JSON with `--json`, else as a `key: value` block.
    func emitBlock(_ result: JSON, order: [String] = []) {
        emit(result) { r in
            for l in Output.block(r, order: order) { Output.out(l) }
        }
    }

    /// Calls a paged list method; with `all`, follows `next_cursor` (passed back as `cursorParam`) and
    /// returns every item in one result.
    func callList(_ method: RPCMethod, _ params: JSON, all: Bool, cursorParam: String = "cursor") throws -> JSON {
        guard all else { return try call(method, params) }
        let connection = try connect()
        defer { connection.close() }
        var p = params
        var items: [JSON] = []
        while true {
            let page = try connection.call(method, p)
            items += page["items"]?.arrayValue ?? []
            guard let cursor = page["next_cursor"], !cursor.isNull else { break }
            p.set(cursorParam, cursor)
        }
        return ["items": .array(items), "next_cursor": .null]
    }
}

/// Options shared by mutating methods.
struct IdempotencyOption: ParsableArguments {
    @Option(
        name: .customLong("idempotency-key"),
        help: ArgumentHelp("Repeating a call with the same key returns the first result.", valueName: "key"))
    var idempotencyKey: String?

    func apply(to params: inout JSON) {
        params.set("idempotency_key", idempotencyKey.json)
    }
}
