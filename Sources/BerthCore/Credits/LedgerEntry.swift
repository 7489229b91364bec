import BerthJSON

public enum LedgerEntryKind: String, Sendable, CaseIterable {
    /// Credits given to a project for one resource class, optionally valid only over [valid_from, valid_to).
    case grant
    /// Lease time paid for, drawn from grants valid over that time.
    case charge
    /// Lease time given back (shortened, ended early, deleted), returned to the grants it was drawn from.
    case refund
    /// An operator's signed correction of one grant's amount.
    case adjustment
}

/// One part of a charge or refund: `amount` drawn from (or returned to) grant `grantID` for the lease
/// time `[from, to)`. `grantID` nil is an unfunded draw, recorded only when enforcement is off.
public struct CreditDraw: Sendable, Hashable {
    public var grantID: String?
    public var amount: CreditAmount
    public var from: Timestamp
    public var to: Timestamp

    public init(grantID: String?, amount: CreditAmount, from: Timestamp, to: Timestamp) {
        self.grantID = grantID
        self.amount = amount
        self.from = from
        self.to = to
    }

    public var json: JSON {
        [
            "grant_id": JSON(grantID), "amount": amount.json, "from": .string(from.rfc3339),
            "to": .string(to.rfc3339),
        ]
    }

    public init?(json: JSON) {
        guard let a = json["amount"], let amount = try? CreditAmount(json: a),
            let from = json["from"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
            let to = json["to"]?.stringValue.flatMap(Timestamp.init(rfc3339:))
        else { return nil }
        self.init(grantID: json["grant_id"]?.stringValue, amount: amount, from: from, to: to)
    }
}

/// An immutable ledger entry. Amounts are positive except an adjustment's, which is signed.
public struct LedgerEntry: Sendable, Hashable {
    public var id: String
    /// Position in the whole ledger, strictly increasing.
    public var seq: Int64
    public var projectID: String
    public var kind: LedgerEntryKind
    public var resourceClass: ResourceClass
    public var amount: CreditAmount
    /// Charges and refunds: the lease.
    public var leaseID: String?
    /// Grants: validity, each bound optional.
    public var validFrom: Timestamp?
    public var validTo: Timestamp?
    /// Adjustments: the grant adjusted.
    public var grantID: String?
    /// Charges and refunds: the lease time paid for or given back, `[from, to)`.
    public var from: Timestamp?
    public var to: Timestamp?
    /// Charges: units held per hour and the rounding origin (see `LeaseCost`).
    public var units: Int64?
    public var origin: Timestamp?
    public var note: String?
    /// When the entry was booked.
    public var at: Timestamp
    /// Charges and refunds: the draws, in order (refunds: latest lease time first).
    public var pieces: [CreditDraw]

    public init(
        id: String, seq: Int64, projectID: String, kind: LedgerEntryKind, resourceClass: ResourceClass,
        amount: CreditAmount, leaseID: String? = nil, validFrom: Timestamp? = nil, validTo: Timestamp? = nil,
        grantID: String? = nil, from: Timestamp? = nil, to: Timestamp? = nil, units: Int64? = nil,
        origin: Timestamp? = nil, note: String? = nil, at: Timestamp, pieces: [CreditDraw] = []
    ) {
        self.id = id
        self.seq = seq
        self.projectID = projectID
        self.kind = kind
        self.resourceClass = resourceClass
        self.amount = amount
        self.leaseID = leaseID
        self.validFrom = validFrom
        self.validTo = validTo
        self.grantID = grantID
        self.from = from
        self.to = to
        self.units = units
        self.origin = origin
        self.note = note
        self.at = at
        self.pieces = pieces
    }

    /// The funded draws by grant.
    public var draws: [String: CreditAmount] {
        var out: [String: CreditAmount] = [:]
        for p in pieces { if let g = p.grantID { out[g, default: .zero] += p.amount } }
        return out
    }

    /// The part drawn from no grant (enforcement off).
    public var unfunded: CreditAmount {
        pieces.reduce(CreditAmount.zero) { $0 + ($1.grantID == nil ? $1.amount : .zero) }
    }

    /// Whether a grant is usable for lease time `[a, b)`.
    public func isValid(from a: Timestamp, to b: Timestamp) -> Bool {
        (validFrom ?? .distantPast) <= a && b <= (validTo ?? Timestamp(seconds: .max))
    }

    /// Whether a grant has expired at `now` (its `valid_to` is not after `now`).
    public func isExpired(at now: Timestamp) -> Bool {
        if let validTo { return validTo <= now }
        return false
    }

    /// The entry as `credits.ledger` and `credits.grant` return it (and as the store keeps it).
    public var json: JSON {
        var o: [String: JSON] = [
            "id": .string(id), "seq": .int(seq), "project_id": .string(projectID), "kind": .string(kind.rawValue),
            "resource_class": .string(resourceClass.rawValue), "amount": amount.json, "lease_id": JSON(leaseID),
            "valid_from": JSON(validFrom?.rfc3339), "valid_to": JSON(validTo?.rfc3339), "note": JSON(note),
            "at": .string(at.rfc3339),
        ]
        if let grantID { o["grant_id"] = .string(grantID) }
        if let from { o["from"] = .string(from.rfc3339) }
        if let to { o["to"] = .string(to.rfc3339) }
        if let units { o["units"] = .int(units) }
        if let origin { o["origin"] = .string(origin.rfc3339) }
        if kind == .charge || kind == .refund { o["draws"] = .array(pieces.map(\.json)) }
        return .object(o)
    }

    public init?(json: JSON) {
        func time(_ key: String) -> Timestamp?? {
            guard let v = json[key], !v.isNull else { return .some(nil) }
            guard let t = v.stringValue.flatMap(Timestamp.init(rfc3339:)) else { return nil }
            return .some(t)
        }
        guard let id = json["id"]?.stringValue, let seq = json["seq"]?.intValue,
            let project = json["project_id"]?.stringValue,
            let kind = json["kind"]?.stringValue.flatMap(LedgerEntryKind.init(rawValue:)),
            let rc = json["resource_class"]?.stringValue.flatMap(ResourceClass.init(rawValue:)),
            let a = json["amount"], let amount = try? CreditAmount(json: a),
            let at = json["at"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
            let validFrom = time("valid_from"), let validTo = time("valid_to"), let from = time("from"),
            let to = time("to"), let origin = time("origin")
        else { return nil }
        var pieces: [CreditDraw] = []
        for p in json["draws"]?.arrayValue ?? [] {
            guard let d = CreditDraw(json: p) else { return nil }
            pieces.append(d)
        }
        self.init(
            id: id, seq: seq, projectID: project, kind: kind, resourceClass: rc, amount: amount,
            leaseID: json["lease_id"]?.stringValue, validFrom: validFrom, validTo: validTo,
            grantID: json["grant_id"]?.stringValue, from: from, to: to, units: json["units"]?.intValue,
            origin: origin, note: json["note"]?.stringValue, at: at, pieces: pieces)
    }
}
