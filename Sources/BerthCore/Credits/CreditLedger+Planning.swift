/// Planning: the entries an operation would record, computed against the current state without
/// changing it (dry runs stop here).
extension CreditLedger {
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
                .init(
                    path: "valid_to", message: "must be after valid_from (\(validFrom.rfc3339)), got \(validTo.rfc3339)"
                ))
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
    public func planRelease(
        _ leaseID: String, now: Timestamp, note: String? = nil, newID: () -> String = { UUIDString.random() }
    )
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
}
