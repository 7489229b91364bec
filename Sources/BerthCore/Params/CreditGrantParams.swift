import BerthJSON

/// `credits.grant` params: `{ project_id, resource_class, amount, valid_from?, valid_to?, note? }`.
public struct CreditGrantParams: Sendable, Hashable {
    public var projectID: String
    public var resourceClass: ResourceClass
    public var amount: CreditAmount
    public var validFrom: Timestamp?
    public var validTo: Timestamp?
    public var note: String?

    public init(
        projectID: String, resourceClass: ResourceClass, amount: CreditAmount, validFrom: Timestamp? = nil,
        validTo: Timestamp? = nil, note: String? = nil
    ) {
        self.projectID = projectID
        self.resourceClass = resourceClass
        self.amount = amount
        self.validFrom = validFrom
        self.validTo = validTo
        self.note = note
    }

    /// Reads the params, reporting every problem with its path (-32602): missing fields, a zero or
    /// negative amount or one with more than six decimals, an unknown resource class, `valid_to`
    /// not after `valid_from`, unknown fields. `now` lets the bounds be `"now"`.
    public static func parse(_ params: JSON?, now: Timestamp? = nil) throws(BerthError) -> CreditGrantParams {
        var r = ParamReader(params)
        let project = r.string("project_id", required: true)
        let rc = r.enumValue("resource_class", ResourceClass.self, required: true)
        let amount = r.creditAmount("amount", required: true, positive: true)
        let validFrom = r.timestamp("valid_from", now: now)
        let validTo = r.timestamp("valid_to", now: now)
        let note = r.string("note", nonEmpty: false, maxLength: 4096)
        _ = r.raw("idempotency_key")
        if let validFrom, let validTo, validTo <= validFrom {
            r.fail("valid_to", "must be after valid_from (\(validFrom.rfc3339)), got \(validTo.rfc3339)")
        }
        try r.finish()
        return CreditGrantParams(
            projectID: project!, resourceClass: rc!, amount: amount!, validFrom: validFrom, validTo: validTo, note: note
        )
    }
}
