import BerthJSON

// MARK: - Entries

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

// MARK: - Balances, holdings, errors

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

/// Part of a lease's charge for one class: `units` per hour over `[origin, end)`, priced from `origin`
/// (see `LeaseCost`). `pieces` are the draws in lease-time order; a piece `[a, b)` (all draws with
/// that time range) holds exactly `C(b − origin) − C(a − origin)`.
public struct HeldSegment: Sendable, Hashable {
    public var origin: Timestamp
    public var end: Timestamp
    public var units: Int64
    public var pieces: [CreditDraw]

    public var amount: CreditAmount { pieces.reduce(.zero) { $0 + $1.amount } }
}

/// What one lease holds now, per class: segments in time order (a new segment starts when the
/// rate changes while the lease is active).
public struct LeaseHolding: Sendable, Hashable {
    public var projectID: String
    public var segments: [ResourceClass: [HeldSegment]]

    /// Net amount charged per class (the lease's `cost`); classes holding nothing are left out.
    public var held: [ResourceClass: CreditAmount] {
        var out: [ResourceClass: CreditAmount] = [:]
        for (c, segs) in segments {
            let v = segs.reduce(CreditAmount.zero) { $0 + $1.amount }
            if !v.isZero { out[c] = v }
        }
        return out
    }
}

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

// MARK: - Ledger

/// Credit accounts as a pure value: grants, charges, refunds and adjustments, with the state they
/// imply (each grant's remainder, each lease's holding) kept incrementally.
///
/// Use: `plan…` computes the entries for an operation against the current state without changing
/// it (dry runs stop here); the caller stores them in the same transaction as the lease change,
/// then `apply`s them. Entries carry consecutive `seq`s after `lastSeq`, so a plan made stale by
/// another apply is refused. `apply` revalidates everything and is all-or-nothing for a batch;
/// replaying stored entries in `seq` order rebuilds the same state (`init(entries:enforce:)`).
///
/// Grants are drawn on only for lease time inside their validity: a charge for `[from, to)` is split
/// at the validity bounds of the account's grants, each piece is priced with the cumulative rounding
/// of `LeaseCost`, and covered by grants valid over the whole piece, the one expiring first (then
/// the oldest) first. Refunds give back the latest lease time first and return each amount to the
/// grant it was drawn from.
///
/// `enforce` false (record costs only): shortfalls are recorded as unfunded draws and `available`
/// may go negative. Enforcement is a planning policy: `apply` accepts unfunded draws either way,
/// so entries recorded before a config change replay unchanged.
public struct CreditLedger: Sendable {
    public var enforce: Bool
    public private(set) var entries: [LedgerEntry] = []
    public private(set) var lastSeq: Int64 = 0
    public private(set) var holdings: [String: LeaseHolding] = [:]

    struct Account: Hashable, Sendable {
        var project: String
        var resourceClass: ResourceClass
    }

    struct Totals: Hashable, Sendable {
        var granted = CreditAmount.zero
        var spent = CreditAmount.zero
        var unfunded = CreditAmount.zero
    }

    struct GrantState: Hashable, Sendable {
        var entry: LedgerEntry
        /// Granted plus adjustments.
        var amount: CreditAmount
        var remaining: CreditAmount
    }

    private var grants: [String: GrantState] = [:]
    private var grantIDsByAccount: [Account: [String]] = [:]
    private var totals: [Account: Totals] = [:]
    private var entryIndexesByProject: [String: [Int]] = [:]
    private var entryIDs: Set<String> = []

    public init(enforce: Bool = true) { self.enforce = enforce }

    /// Rebuilds a ledger from stored entries (in `seq` order).
    public init(entries: [LedgerEntry], enforce: Bool = true) throws(BerthError) {
        self.init(enforce: enforce)
        for e in entries { try apply(e) }
    }

    // MARK: Reading

    /// The project's balance per class it has a grant or a net charge in (empty for an unknown project).
    public func balance(project: String, now: Timestamp) -> [ResourceClass: CreditBalance] {
        var out: [ResourceClass: CreditBalance] = [:]
        for c in ResourceClass.allCases {
            let account = Account(project: project, resourceClass: c)
            // An account appears once it has a grant or a net charge (enforcement off): a lease
            // created and deleted without grants leaves no trace in the balance.
            guard let t = totals[account], !(grantIDsByAccount[account] ?? []).isEmpty || !t.spent.isZero else { continue }
            var available = CreditAmount.zero
            var expired = CreditAmount.zero
            for g in grantIDsByAccount[account] ?? [] {
                let s = grants[g]!
                if s.entry.isExpired(at: now) { expired += s.remaining } else { available += s.remaining }
            }
            out[c] = CreditBalance(granted: t.granted, spent: t.spent, available: available - t.unfunded, expired: expired)
        }
        return out
    }

    /// `credits.balance`'s result: `{ resource_class: { granted, spent, available, expired } }`.
    public func balanceJSON(project: String, now: Timestamp) -> JSON {
        .object(Dictionary(uniqueKeysWithValues: balance(project: project, now: now).map { ($0.key.rawValue, $0.value.json) }))
    }

    /// A grant's entry, current amount (with adjustments) and remainder.
    public func grant(_ id: String) -> (entry: LedgerEntry, amount: CreditAmount, remaining: CreditAmount)? {
        grants[id].map { ($0.entry, $0.amount, $0.remaining) }
    }

    /// What a lease holds now per class (its `cost`); empty if it holds nothing.
    public func held(lease id: String) -> [ResourceClass: CreditAmount] { holdings[id]?.held ?? [:] }

    /// One page of a project's entries in `seq` order, after `afterSeq`; `next` is the seq to pass as
    /// `afterSeq` for the following page, nil on the last page.
    public func entries(project: String, afterSeq: Int64 = 0, limit: Int = 100) -> (items: [LedgerEntry], next: Int64?) {
        let idx = entryIndexesByProject[project] ?? []
        var lo = 0
        var hi = idx.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[idx[mid]].seq <= afterSeq { lo = mid + 1 } else { hi = mid }
        }
        let end = Swift.min(idx.count, lo + Swift.max(limit, 0))
        let items = idx[lo..<end].map { entries[$0] }
        return (items, end < idx.count ? items.last?.seq : nil)
    }

    // MARK: Planning: grants and adjustments

    /// The entry for `credits.grant`. Throws -32602 for a non-positive amount or an empty validity.
    public func planGrant(
        project: String, resourceClass: ResourceClass, amount: CreditAmount, validFrom: Timestamp? = nil,
        validTo: Timestamp? = nil, note: String? = nil, at: Timestamp, id: String = UUIDString.random()
    ) throws(BerthError) -> LedgerEntry {
        var errors: [BerthError.FieldError] = []
        if !amount.isPositive { errors.append(.init(path: "amount", message: "must be greater than 0, got \(amount)")) }
        if let validFrom, let validTo, validTo <= validFrom {
            errors.append(
                .init(path: "valid_to", message: "must be after valid_from (\(validFrom.rfc3339)), got \(validTo.rfc3339)"))
        }
        if !errors.isEmpty { throw .invalidParams(errors) }
        return LedgerEntry(
            id: id, seq: lastSeq + 1, projectID: project, kind: .grant, resourceClass: resourceClass, amount: amount,
            validFrom: validFrom, validTo: validTo, note: note, at: at)
    }

    public func planGrant(_ p: CreditGrantParams, at: Timestamp, id: String = UUIDString.random()) throws(BerthError)
        -> LedgerEntry
    {
        try planGrant(
            project: p.projectID, resourceClass: p.resourceClass, amount: p.amount, validFrom: p.validFrom,
            validTo: p.validTo, note: p.note, at: at, id: id)
    }

    /// An adjustment of grant `grantID` by `delta` (signed). It may not take away more than remains.
    public func planAdjustment(
        grantID: String, delta: CreditAmount, note: String? = nil, at: Timestamp, id: String = UUIDString.random()
    ) throws(BerthError) -> LedgerEntry {
        guard let g = grants[grantID] else { throw .notFound("unknown grant \(grantID)") }
        if delta.isZero { throw .invalidParam("amount", "must not be 0") }
        if let v = g.remaining.adding(delta), v.isNegative {
            throw .conflict("grant \(grantID) has \(g.remaining) left; it cannot be reduced by \(-delta)")
        }
        return LedgerEntry(
            id: id, seq: lastSeq + 1, projectID: g.entry.projectID, kind: .adjustment,
            resourceClass: g.entry.resourceClass, amount: delta, grantID: grantID, note: note, at: at)
    }

    // MARK: Planning: charges

    private struct DrawPlan {
        var pieces: [CreditDraw] = []
        var required = CreditAmount.zero
        var covered = CreditAmount.zero
        var shortFrom: Timestamp?
    }

    /// Draws for `units` over lease time `[from, to)` priced from `origin`. `overlay` holds changes
    /// to grant remainders made earlier in the same plan and receives this plan's draws.
    private func drawPlan(
        account: Account, units: Int64, origin: Timestamp, from: Timestamp, to: Timestamp,
        overlay: inout [String: CreditAmount]
    ) throws(BerthError) -> DrawPlan {
        var plan = DrawPlan()
        guard to > from, units > 0 else { return plan }
        let ids = grantIDsByAccount[account] ?? []
        var cuts: Set<Int64> = [from.seconds, to.seconds]
        for g in ids {
            let e = grants[g]!.entry
            for t in [e.validFrom, e.validTo] {
                if let t, t > from, t < to { cuts.insert(t.seconds) }
            }
        }
        let bounds = cuts.sorted().map(Timestamp.init(seconds:))
        func remaining(_ g: String) -> CreditAmount { grants[g]!.remaining + (overlay[g] ?? .zero) }
        for k in 0..<(bounds.count - 1) {
            let a = bounds[k]
            let b = bounds[k + 1]
            guard let cost = LeaseCost.cost(units: units, origin: origin, from: a, to: b) else {
                throw LeaseCost.outOfRange(account.resourceClass)
            }
            plan.required += cost
            var need = cost
            let eligible = ids.filter { grants[$0]!.entry.isValid(from: a, to: b) && remaining($0).isPositive }
                .sorted { x, y in
                    let ex = grants[x]!.entry
                    let ey = grants[y]!.entry
                    let tx = ex.validTo?.seconds ?? .max
                    let ty = ey.validTo?.seconds ?? .max
                    return tx != ty ? tx < ty : ex.seq < ey.seq
                }
            for g in eligible where need.isPositive {
                let take = CreditAmount.min(need, remaining(g))
                plan.pieces.append(CreditDraw(grantID: g, amount: take, from: a, to: b))
                overlay[g, default: .zero] -= take
                need -= take
            }
            plan.covered += cost - need
            if need.isPositive {
                if plan.shortFrom == nil { plan.shortFrom = a }
                if !enforce { plan.pieces.append(CreditDraw(grantID: nil, amount: need, from: a, to: b)) }
            }
        }
        return plan
    }

    /// The draws that would pay for holding `rates` over lease time `[from, to)` (priced from
    /// `origin`, by default `from`), or the first class (in `ResourceClass` order) the project's
    /// grants cannot cover. With enforcement off it always succeeds, with unfunded draws for shortfalls.
    public func planCharge(
        project: String, rates: [ResourceClass: Int64], from: Timestamp, to: Timestamp, origin: Timestamp? = nil
    ) throws(BerthError) -> Result<[ResourceClass: [CreditDraw]], InsufficientCredits> {
        var overlay: [String: CreditAmount] = [:]
        var out: [ResourceClass: [CreditDraw]] = [:]
        for c in ResourceClass.allCases {
            guard let u = rates[c], u > 0 else { continue }
            let plan = try drawPlan(
                account: Account(project: project, resourceClass: c), units: u, origin: origin ?? from, from: from,
                to: to, overlay: &overlay)
            if enforce && plan.covered < plan.required {
                return .failure(
                    InsufficientCredits(
                        projectID: project, resourceClass: c, required: plan.required, available: plan.covered,
                        shortFrom: plan.shortFrom))
            }
            out[c] = plan.pieces
        }
        return .success(out)
    }

    /// Gives back everything held after `t` (latest lease time first), updating `segments`.
    /// Returns the draws returned and the lease time they paid for, or nil if nothing is held after `t`.
    static func tailRefund(_ segments: inout [HeldSegment], from t: Timestamp) -> (
        pieces: [CreditDraw], amount: CreditAmount, from: Timestamp, to: Timestamp
    )? {
        guard let first = segments.first, let last = segments.last, last.end > t else { return nil }
        let cut = Swift.max(t, first.origin)
        var pieces: [CreditDraw] = []
        var total = CreditAmount.zero
        while var seg = segments.popLast() {
            if seg.origin >= cut {
                for p in seg.pieces.reversed() { pieces.append(p) }
                total += seg.amount
                continue
            }
            if seg.end <= cut {
                segments.append(seg)
                break
            }
            // C(end − origin) − C(cut − origin); both fit because the segment's charge did.
            var give = LeaseCost.cost(units: seg.units, origin: seg.origin, from: cut, to: seg.end)!
            total += give
            while give.isPositive, var p = seg.pieces.popLast() {
                let take = CreditAmount.min(give, p.amount)
                pieces.append(CreditDraw(grantID: p.grantID, amount: take, from: Swift.max(p.from, cut), to: p.to))
                give -= take
                p.amount -= take
                if p.amount.isPositive {
                    p.to = Swift.min(p.to, cut)
                    seg.pieces.append(p)
                }
            }
            // Draws of the piece straddling the cut that were not given back now pay for its part
            // before the cut (they hold exactly C(cut − origin) − C(a − origin) between them).
            for k in seg.pieces.indices where seg.pieces[k].to > cut { seg.pieces[k].to = cut }
            seg.end = cut
            segments.append(seg)
            break
        }
        return (pieces, total, cut, last.end)
    }

    /// The entries that bring lease `leaseID`'s charge to: `rates` held over `[start, end)`, as of
    /// `now`. Lease time before `now` is history and never repriced. This one call covers every
    /// lease change:
    /// - create: charges `[max(start, now), end)`;
    /// - extend or shorten the end (same rates): charges `C(end' − o) − C(end − o)` or refunds it;
    /// - early end: `end = now`; delete: `end = now` (pending lease: everything is refunded);
    /// - move a pending lease, or change its rates: full refund, then a new charge;
    /// - change the rates of an active lease: refund from `now`, new segment charged from `now`.
    /// Throws -32003 (`InsufficientCredits.error`) when enforcement is on and grants valid over the
    /// new lease time cannot cover the new charge; nothing is planned then.
    public func planLease(
        _ leaseID: String, project: String, rates: [ResourceClass: Int64], start: Timestamp, end: Timestamp,
        now: Timestamp, note: String? = nil, newID: () -> String = { UUIDString.random() }
    ) throws(BerthError) -> [LedgerEntry] {
        if let h = holdings[leaseID], h.projectID != project {
            throw .conflict("lease \(leaseID) is charged to project \(h.projectID), not \(project)")
        }
        let holding = holdings[leaseID]
        let targetFrom = Swift.max(start, now)
        var refunds: [(ResourceClass, Timestamp)] = []
        var charges: [(c: ResourceClass, units: Int64, origin: Timestamp, from: Timestamp, to: Timestamp)] = []
        for c in ResourceClass.allCases {
            let u = Swift.max(rates[c] ?? 0, 0)
            let segs = holding?.segments[c] ?? []
            guard u > 0, end > targetFrom else {
                refunds.append((c, now))
                continue
            }
            if let first = segs.first, let last = segs.last, last.units == u, last.end > now,
                Swift.max(first.origin, now) == targetFrom, segs.count == 1 || last.origin <= now
            {
                if end > last.end {
                    charges.append((c, u, last.origin, last.end, end))
                } else if end < last.end {
                    refunds.append((c, end))
                }
            } else {
                refunds.append((c, now))
                charges.append((c, u, targetFrom, targetFrom, end))
            }
        }
        var out: [LedgerEntry] = []
        var overlay: [String: CreditAmount] = [:]
        var seq = lastSeq
        for (c, t) in refunds {
            var segs = holding?.segments[c] ?? []
            guard let r = CreditLedger.tailRefund(&segs, from: t), r.amount.isPositive else { continue }
            for p in r.pieces { if let g = p.grantID { overlay[g, default: .zero] += p.amount } }
            seq += 1
            out.append(
                LedgerEntry(
                    id: newID(), seq: seq, projectID: project, kind: .refund, resourceClass: c, amount: r.amount,
                    leaseID: leaseID, from: r.from, to: r.to, note: note, at: now, pieces: r.pieces))
        }
        for ch in charges {
            let plan = try drawPlan(
                account: Account(project: project, resourceClass: ch.c), units: ch.units, origin: ch.origin,
                from: ch.from, to: ch.to, overlay: &overlay)
            if enforce && plan.covered < plan.required {
                throw InsufficientCredits(
                    projectID: project, resourceClass: ch.c, required: plan.required, available: plan.covered,
                    shortFrom: plan.shortFrom
                ).error
            }
            guard plan.required.isPositive else { continue }
            seq += 1
            out.append(
                LedgerEntry(
                    id: newID(), seq: seq, projectID: project, kind: .charge, resourceClass: ch.c,
                    amount: plan.required, leaseID: leaseID, from: ch.from, to: ch.to, units: ch.units,
                    origin: ch.origin, note: note, at: now, pieces: plan.pieces))
        }
        return out
    }

    /// Refunds of everything lease `leaseID` holds after `now`: delete (a pending lease gets its whole
    /// charge back) and early end. Never fails.
    public func planRelease(_ leaseID: String, now: Timestamp, note: String? = nil, newID: () -> String = { UUIDString.random() })
        -> [LedgerEntry]
    {
        guard let h = holdings[leaseID] else { return [] }
        var out: [LedgerEntry] = []
        var seq = lastSeq
        for c in ResourceClass.allCases {
            var segs = h.segments[c] ?? []
            guard let r = CreditLedger.tailRefund(&segs, from: now), r.amount.isPositive else { continue }
            seq += 1
            out.append(
                LedgerEntry(
                    id: newID(), seq: seq, projectID: h.projectID, kind: .refund, resourceClass: c, amount: r.amount,
                    leaseID: leaseID, from: r.from, to: r.to, note: note, at: now, pieces: r.pieces))
        }
        return out
    }

    /// The refund (per class) a batch of planned entries gives back, e.g. for `lease.delete`'s result.
    public static func refunds(in entries: [LedgerEntry]) -> [ResourceClass: CreditAmount] {
        var out: [ResourceClass: CreditAmount] = [:]
        for e in entries where e.kind == .refund { out[e.resourceClass, default: .zero] += e.amount }
        return out
    }

    // MARK: Applying

    private static func invalid(_ e: LedgerEntry, _ why: String) -> BerthError {
        BerthError(.internalError, "ledger entry \(e.seq) (\(e.kind.rawValue) \(e.id)) is inconsistent: \(why)")
    }

    /// Applies entries in order, all or nothing: on an invalid entry the ledger is left as it was.
    public mutating func apply(_ batch: [LedgerEntry]) throws(BerthError) {
        // Everything an entry can touch is keyed by its grants, lease and account: save those.
        var grantKeys: Set<String> = []
        var leaseKeys: Set<String> = []
        var accountKeys: Set<Account> = []
        var projects: Set<String> = []
        for e in batch {
            grantKeys.insert(e.id)
            if let g = e.grantID { grantKeys.insert(g) }
            for p in e.pieces { if let g = p.grantID { grantKeys.insert(g) } }
            if let l = e.leaseID { leaseKeys.insert(l) }
            accountKeys.insert(Account(project: e.projectID, resourceClass: e.resourceClass))
            projects.insert(e.projectID)
        }
        let savedGrants = grantKeys.map { ($0, grants[$0]) }
        let savedHoldings = leaseKeys.map { ($0, holdings[$0]) }
        let savedTotals = accountKeys.map { ($0, totals[$0], grantIDsByAccount[$0]) }
        let savedIndexes = projects.map { ($0, entryIndexesByProject[$0]) }
        let savedCount = entries.count
        let savedSeq = lastSeq
        var applied: [String] = []
        do throws(BerthError) {
            for e in batch {
                try apply(e)
                applied.append(e.id)
            }
        } catch {
            for (k, v) in savedGrants { grants[k] = v }
            for (k, v) in savedHoldings { holdings[k] = v }
            for (k, t, ids) in savedTotals {
                totals[k] = t
                grantIDsByAccount[k] = ids
            }
            for (k, v) in savedIndexes { entryIndexesByProject[k] = v }
            entries.removeLast(entries.count - savedCount)
            lastSeq = savedSeq
            for id in applied { entryIDs.remove(id) }
            throw error
        }
    }

    /// Applies one entry after checking it against the state (nothing changes if it is refused).
    public mutating func apply(_ e: LedgerEntry) throws(BerthError) {
        guard e.seq > lastSeq else { throw Self.invalid(e, "seq is not after \(lastSeq) (stale plan?)") }
        guard !entryIDs.contains(e.id) else { throw Self.invalid(e, "duplicate id") }
        let account = Account(project: e.projectID, resourceClass: e.resourceClass)
        switch e.kind {
        case .grant:
            guard e.amount.isPositive else { throw Self.invalid(e, "a grant must be positive") }
            if let f = e.validFrom, let t = e.validTo, t <= f { throw Self.invalid(e, "valid_to is not after valid_from") }
            guard grants[e.id] == nil else { throw Self.invalid(e, "duplicate grant") }
            grants[e.id] = GrantState(entry: e, amount: e.amount, remaining: e.amount)
            grantIDsByAccount[account, default: []].append(e.id)
            totals[account, default: Totals()].granted += e.amount
        case .adjustment:
            guard let g = e.grantID, let s = grants[g] else { throw Self.invalid(e, "unknown grant") }
            guard s.entry.projectID == e.projectID, s.entry.resourceClass == e.resourceClass else {
                throw Self.invalid(e, "grant \(g) belongs to another account")
            }
            guard !e.amount.isZero, let r = s.remaining.adding(e.amount), !r.isNegative else {
                throw Self.invalid(e, "adjustment leaves grant \(g) negative")
            }
            grants[g]!.remaining = r
            grants[g]!.amount += e.amount
            totals[account, default: Totals()].granted += e.amount
        case .charge:
            try applyCharge(e, account: account)
        case .refund:
            try applyRefund(e, account: account)
        }
        entryIDs.insert(e.id)
        lastSeq = e.seq
        entryIndexesByProject[e.projectID, default: []].append(entries.count)
        entries.append(e)
    }

    private mutating func applyCharge(_ e: LedgerEntry, account: Account) throws(BerthError) {
        guard let lease = e.leaseID, let from = e.from, let to = e.to, let units = e.units, let origin = e.origin,
            units > 0, from < to, origin <= from
        else { throw Self.invalid(e, "a charge needs lease_id, from < to, units > 0 and origin <= from") }
        if let h = holdings[lease], h.projectID != e.projectID {
            throw Self.invalid(e, "lease \(lease) is charged to \(h.projectID)")
        }
        guard let total = LeaseCost.cost(units: units, origin: origin, from: from, to: to), total == e.amount else {
            throw Self.invalid(e, "amount is not the cost of the span")
        }
        // The draws tile [from, to) in order, each piece holding exactly its cumulative cost.
        var k = 0
        var cursor = from
        var used: [String: CreditAmount] = [:]
        var unfunded = CreditAmount.zero
        while k < e.pieces.count {
            let a = e.pieces[k].from
            let b = e.pieces[k].to
            guard a == cursor, b > a, b <= to else { throw Self.invalid(e, "draws do not tile the span") }
            var sum = CreditAmount.zero
            while k < e.pieces.count, e.pieces[k].from == a, e.pieces[k].to == b {
                let p = e.pieces[k]
                guard p.amount.isPositive else { throw Self.invalid(e, "a draw must be positive") }
                if let g = p.grantID {
                    guard let s = grants[g], s.entry.projectID == e.projectID, s.entry.resourceClass == e.resourceClass,
                        s.entry.isValid(from: a, to: b)
                    else { throw Self.invalid(e, "grant \(g) cannot pay for \(a)..<\(b)") }
                    used[g, default: .zero] += p.amount
                    guard used[g]! <= s.remaining else { throw Self.invalid(e, "grant \(g) is overdrawn") }
                } else {
                    unfunded += p.amount
                }
                sum += p.amount
                k += 1
            }
            guard sum == LeaseCost.cost(units: units, origin: origin, from: a, to: b) else {
                throw Self.invalid(e, "draws for \(a)..<\(b) are not its cost")
            }
            cursor = b
        }
        guard cursor == to || e.pieces.isEmpty && total.isZero else { throw Self.invalid(e, "draws do not cover the span") }
        var holding = holdings[lease] ?? LeaseHolding(projectID: e.projectID, segments: [:])
        var segs = holding.segments[e.resourceClass] ?? []
        if var last = segs.last, last.origin == origin, last.units == units, last.end == from {
            last.pieces += e.pieces
            last.end = to
            segs[segs.count - 1] = last
        } else {
            guard origin == from else { throw Self.invalid(e, "an extension does not continue the lease's last segment") }
            if let last = segs.last, last.end > from { throw Self.invalid(e, "a new segment overlaps the held time") }
            segs.append(HeldSegment(origin: origin, end: to, units: units, pieces: e.pieces))
        }
        holding.segments[e.resourceClass] = segs
        holdings[lease] = holding
        for (g, v) in used { grants[g]!.remaining -= v }
        totals[account, default: Totals()].spent += e.amount
        totals[account, default: Totals()].unfunded += unfunded
    }

    private mutating func applyRefund(_ e: LedgerEntry, account: Account) throws(BerthError) {
        guard let lease = e.leaseID, let from = e.from, var holding = holdings[lease], holding.projectID == e.projectID
        else { throw Self.invalid(e, "a refund needs a lease this project holds") }
        var segs = holding.segments[e.resourceClass] ?? []
        guard let r = CreditLedger.tailRefund(&segs, from: from), r.amount == e.amount, r.pieces == e.pieces,
            r.from == from, r.to == e.to
        else { throw Self.invalid(e, "it is not what the lease holds after \(from.rfc3339)") }
        holding.segments[e.resourceClass] = segs
        holdings[lease] = holding
        var unfunded = CreditAmount.zero
        for p in e.pieces {
            if let g = p.grantID { grants[g]!.remaining += p.amount } else { unfunded += p.amount }
        }
        totals[account, default: Totals()].spent -= e.amount
        totals[account, default: Totals()].unfunded -= unfunded
    }

    // MARK: Audit

    /// Recomputes balances, grant remainders and lease holdings from the entries alone and lists every
    /// disagreement with the incremental state or broken invariant (empty when all is well).
    public func audit() -> [String] {
        var problems: [String] = []
        var granted: [Account: CreditAmount] = [:]
        var spent: [Account: CreditAmount] = [:]
        var unfunded: [Account: CreditAmount] = [:]
        var remaining: [String: CreditAmount] = [:]
        var held: [String: [ResourceClass: CreditAmount]] = [:]
        for e in entries {
            let a = Account(project: e.projectID, resourceClass: e.resourceClass)
            switch e.kind {
            case .grant:
                granted[a, default: .zero] += e.amount
                remaining[e.id, default: .zero] += e.amount
            case .adjustment:
                granted[a, default: .zero] += e.amount
                remaining[e.grantID ?? "", default: .zero] += e.amount
            case .charge, .refund:
                let sign: CreditAmount = e.kind == .charge ? e.amount : -e.amount
                spent[a, default: .zero] += sign
                held[e.leaseID ?? "", default: [:]][e.resourceClass, default: .zero] += sign
                for p in e.pieces {
                    let v = e.kind == .charge ? -p.amount : p.amount
                    if let g = p.grantID { remaining[g, default: .zero] += v } else { unfunded[a, default: .zero] -= v }
                }
            }
        }
        for (a, t) in totals {
            if t.granted != granted[a] ?? .zero { problems.append("\(a): granted \(t.granted) != entries \(granted[a] ?? .zero)") }
            if t.spent != spent[a] ?? .zero { problems.append("\(a): spent \(t.spent) != entries \(spent[a] ?? .zero)") }
            if t.unfunded != unfunded[a] ?? .zero { problems.append("\(a): unfunded \(t.unfunded) != entries") }
            if t.unfunded.isNegative { problems.append("\(a): negative unfunded \(t.unfunded)") }
            let rem = (grantIDsByAccount[a] ?? []).reduce(CreditAmount.zero) { $0 + grants[$1]!.remaining }
            if t.granted - t.spent != rem - t.unfunded {
                problems.append("\(a): granted − spent \(t.granted - t.spent) != remaining − unfunded \(rem - t.unfunded)")
            }
        }
        for (g, s) in grants {
            if s.remaining != remaining[g] ?? .zero { problems.append("grant \(g): remaining \(s.remaining) != entries \(remaining[g] ?? .zero)") }
            if s.remaining.isNegative { problems.append("grant \(g): negative remaining \(s.remaining)") }
            if s.remaining > s.amount { problems.append("grant \(g): remaining \(s.remaining) above its amount \(s.amount)") }
        }
        for (l, h) in holdings where h.held != (held[l] ?? [:]).filter({ !$0.value.isZero }) {
            problems.append("lease \(l): holds \(h.held) but entries say \(held[l] ?? [:])")
        }
        return problems
    }
}

// MARK: - Params

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
            projectID: project!, resourceClass: rc!, amount: amount!, validFrom: validFrom, validTo: validTo, note: note)
    }
}

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
