import BerthJSON

/// One resource class of a project's balance.
///
/// `granted` = grants + adjustments; `spent` = charges − refunds (unfunded charges included);
/// `available` = what remains on grants not expired at the time asked (grants valid only later count),
/// minus unfunded charges; `expired` = what remains on grants whose `valid_to` has passed.
/// Always `granted − spent == available + expired`.
public struct CreditBalance: Sendable, Hashable {
    public var granted: CreditAmount
    public var spent: CreditAmount
    public var available: CreditAmount
    public var expired: CreditAmount

    public init(granted: CreditAmount, spent: CreditAmount, available: CreditAmount, expired: CreditAmount) {
        self.granted = granted
        self.spent = spent
        self.available = available
        self.expired = expired
    }

    public var json: JSON {
        ["granted": granted.json, "spent": spent.json, "available": available.json, "expired": expired.json]
    }
}
