import BerthJSON

/// `credits.ledger` params: `{ project_id, cursor?, limit? }`; the cursor is the `seq` of the last
/// entry of the previous page, as a string.
public struct CreditLedgerParams: Sendable, Hashable {
    public var projectID: String
    public var afterSeq: Int64
    public var limit: Int

    public static func parse(_ params: JSON?, defaultLimit: Int = 100, maxLimit: Int = 1000) throws(BerthError)
        -> CreditLedgerParams
    {
        var r = ParamReader(params)
        let project = r.string("project_id", required: true)
        var after: Int64 = 0
        if let c = r.string("cursor") {
            if let v = Int64(c), v >= 0 { after = v } else { r.fail("cursor", "is not a cursor this server returned") }
        }
        let limit = r.int("limit", min: 1, max: Int64(maxLimit)).map(Int.init) ?? defaultLimit
        try r.finish()
        return CreditLedgerParams(projectID: project!, afterSeq: after, limit: limit)
    }

    /// `{ "items": [...], "next_cursor": ... }` for one page of `ledger`.
    public func page(of ledger: CreditLedger) -> JSON {
        let (items, next) = ledger.entries(project: projectID, afterSeq: afterSeq, limit: limit)
        return ["items": .array(items.map(\.json)), "next_cursor": JSON(next.map { String($0) })]
    }
}
