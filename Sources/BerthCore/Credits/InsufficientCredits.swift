import BerthJSON

/// A charge the grants cannot cover (enforcement on).
public struct InsufficientCredits: Error, Sendable, Hashable, CustomStringConvertible {
    public var projectID: String
    public var resourceClass: ResourceClass
    /// What the charge costs.
    public var required: CreditAmount
    /// What grants valid over the charged time could cover of it.
    public var available: CreditAmount
    /// Start of the first piece of lease time the grants could not cover.
    public var shortFrom: Timestamp?

    public var description: String { error.message }

    /// -32003 with `data.resource_class`, `data.required`, `data.available` (JSON numbers) and `data.short_from`.
    public var error: BerthError {
        var message =
            "insufficient \(resourceClass.rawValue) credits for project \(projectID): this needs \(required) but grants valid over the lease's time cover only \(available)"
        if let shortFrom { message += " (uncovered from \(shortFrom.rfc3339))" }
        var data: [String: JSON] = [
            "resource_class": .string(resourceClass.rawValue), "required": required.json,
            "available": available.json,
        ]
        if let shortFrom { data["short_from"] = .string(shortFrom.rfc3339) }
        return BerthError(.insufficientCredits, message, data: data)
    }
}
