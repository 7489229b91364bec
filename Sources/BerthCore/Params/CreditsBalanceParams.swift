import BerthJSON

/// `credits.balance` params: `{ project_id }`.
public struct CreditsBalanceParams: Sendable {
    public var projectID: String

    public static func parse(_ params: JSON?) throws(BerthError) -> CreditsBalanceParams {
        var r = ParamReader(params)
        let project = r.string("project_id", required: true)
        try r.finish()
        guard let project else { throw .invalidParam("project_id", "is required") }
        return CreditsBalanceParams(projectID: project)
    }
}
