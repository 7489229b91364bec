import BerthJSON

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

    // Readable by the planning and audit extensions; only `apply` (in this file) writes.
    private(set) var grants: [String: GrantState] = [:]
    private(set) var grantIDsByAccount: [Account: [String]] = [:]
    private(set) var totals: [Account: Totals] = [:]
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
            guard let t = totals[account], !(grantIDsByAccount[account] ?? []).isEmpty || !t.spent.isZero else {
                continue
            }
            var available = CreditAmount.zero
            var expired = CreditAmount.zero
            for g in grantIDsByAccount[account] ?? [] {
                let s = grants[g]!
                if s.entry.isExpired(at: now) { expired += s.remaining } else { available += s.remaining }
            }
            out[c] = CreditBalance(
                granted: t.granted, spent: t.spent, available: available - t.unfunded, expired: expired)
        }
        return out
    }

    /// `credits.balance`'s result: `{ resource_class: { granted, spent, available, expired } }`.
    public func balanceJSON(project: String, now: Timestamp) -> JSON {
        .object(
            Dictionary(
                uniqueKeysWithValues: balance(project: project, now: now).map { ($0.key.rawValue, $0.value.json) }))
    }

    /// A grant's entry, current amount (with adjustments) and remainder.
    public func grant(_ id: String) -> (entry: LedgerEntry, amount: CreditAmount, remaining: CreditAmount)? {
        grants[id].map { ($0.entry, $0.amount, $0.remaining) }
    }

    /// What a lease holds now per class (its `cost`); empty if it holds nothing.
    public func held(lease id: String) -> [ResourceClass: CreditAmount] { holdings[id]?.held ?? [:] }

    /// One page of a project's entries in `seq` order, after `afterSeq`; `next` is the seq to pass as
    /// `afterSeq` for the following page, nil on the last page.
    public func entries(project: String, afterSeq: Int64 = 0, limit: Int = 100) -> (items: [LedgerEntry], next: Int64?)
    {
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
            if let f = e.validFrom, let t = e.validTo, t <= f {
                throw Self.invalid(e, "valid_to is not after valid_from")
            }
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
        guard cursor == to || e.pieces.isEmpty && total.isZero else {
            throw Self.invalid(e, "draws do not cover the span")
        }
        var holding = holdings[lease] ?? LeaseHolding(projectID: e.projectID, segments: [:])
        var segs = holding.segments[e.resourceClass] ?? []
        if var last = segs.last, last.origin == origin, last.units == units, last.end == from {
            last.pieces += e.pieces
            last.end = to
            segs[segs.count - 1] = last
        } else {
            guard origin == from else {
                throw Self.invalid(e, "an extension does not continue the lease's last segment")
            }
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
}
