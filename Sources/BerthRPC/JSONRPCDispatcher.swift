import BerthJSON

/// JSON-RPC 2.0 processing of one framed text, without sockets.
///
/// Handles single requests, notifications (no `id`, no reply) and batches (array in, array out,
/// notifications omitted; an empty batch is one -32600 error; a batch of only notifications gets no
/// reply). Ids are echoed as parsed: strings, integers and null exactly; other numbers (fractions,
/// integers beyond 64 bits) as the `Double` they parse to. Batch elements are handled one after
/// another, in order.
public struct JSONRPCDispatcher: Sendable {
    /// What to do with well-formed requests.
    enum Mode: Sendable {
        /// Call the handler.
        case serve
        /// Answer every call with this error without calling the handler (a refused peer).
        case refuse(RPCError)
        /// Answer every call with -32007 `unavailable`, and ignore what does not parse (the server is
        /// shutting down and the line may have been cut short).
        case drain
    }

    private let handler: any RPCHandler
    public let maxBatchSize: Int

    public init(handler: some RPCHandler, maxBatchSize: Int = 1000) {
        precondition(maxBatchSize > 0, "maxBatchSize must be positive")
        self.handler = handler
        self.maxBatchSize = maxBatchSize
    }

    /// Processes one line (without its newline) and returns the reply text (without a newline), or `nil`
    /// when nothing is to be sent back.
    public func process(line: [UInt8], context: RPCContext) async -> [UInt8]? {
        await process(line: line, context: context, mode: .serve)
    }

    func process(line: [UInt8], context: RPCContext, mode: Mode) async -> [UInt8]? {
        let message: JSON
        do {
            message = try JSONParser.parse(line)
        } catch {
            if case .drain = mode { return nil }
            return Self.errorResponse(.parseError("parse error: \(error.description)"), id: .null).serializedBytes()
        }

        guard case .array(let batch) = message else {
            return await processOne(message, context: context, mode: mode)?.serializedBytes()
        }
        if batch.isEmpty {
            return Self.errorResponse(.invalidRequest("empty batch"), id: .null).serializedBytes()
        }
        if batch.count > maxBatchSize {
            return Self.errorResponse(
                .invalidRequest("batch of \(batch.count) requests exceeds the limit of \(maxBatchSize)"),
                id: .null
            ).serializedBytes()
        }
        var replies: [JSON] = []
        for element in batch {
            if let reply = await processOne(element, context: context, mode: mode) {
                replies.append(reply)
            }
        }
        return replies.isEmpty ? nil : JSON.array(replies).serializedBytes()
    }

    /// One request object; `nil` for a (valid) notification.
    private func processOne(_ value: JSON, context: RPCContext, mode: Mode) async -> JSON? {
        guard case .object(let request) = value else {
            return Self.errorResponse(.invalidRequest("a request must be an object, got \(value.typeName)"), id: .null)
        }

        // `nil` means a notification. An id of the wrong type cannot be echoed, so the error gets null.
        let id: JSON?
        switch request["id"] {
        case nil: id = nil
        case .some(let raw):
            switch raw {
            case .string, .int, .double, .null: id = raw
            case .bool, .array, .object:
                return Self.errorResponse(
                    .invalidRequest("id must be a string, a number or null, got \(raw.typeName)"),
                    id: .null
                )
            }
        }
        let replyID = id ?? .null

        guard request["jsonrpc"] == .string("2.0") else {
            return Self.errorResponse(.invalidRequest("jsonrpc must be \"2.0\""), id: replyID)
        }
        guard let methodValue = request["method"] else {
            return Self.errorResponse(.invalidRequest("method is missing"), id: replyID)
        }
        guard case .string(let method) = methodValue else {
            return Self.errorResponse(
                .invalidRequest("method must be a string, got \(methodValue.typeName)"),
                id: replyID
            )
        }
        let params: JSON?
        switch request["params"] {
        case nil: params = nil
        case .some(let p):
            switch p {
            case .object, .array: params = p
            default:
                return Self.errorResponse(
                    .invalidRequest("params must be an object or an array, got \(p.typeName)"),
                    id: replyID
                )
            }
        }

        // (No `id == nil ? nil : ...` here: JSON is ExpressibleByNilLiteral, so that `nil` would become
        // JSON.null and a notification would be answered with "null".)
        switch mode {
        case .refuse(let error):
            guard let id else { return nil }
            return Self.errorResponse(error, id: id)
        case .drain:
            guard let id else { return nil }
            return Self.errorResponse(.shuttingDown, id: id)
        case .serve:
            do {
                let result = try await handler.handle(method: method, params: params, context: context)
                guard let id else { return nil }
                return ["jsonrpc": "2.0", "result": result, "id": id]
            } catch {
                guard let id else { return nil }
                return Self.errorResponse(error, id: id)
            }
        }
    }

    static func errorResponse(_ error: RPCError, id: JSON) -> JSON {
        ["jsonrpc": "2.0", "error": error.json, "id": id]
    }
}
