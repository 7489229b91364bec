import BerthCore
import BerthJSON

extension Scheduler {
    func creditsGrant(_ params: JSON?, idempotency: IdempotencyContext?) throws(BerthError) -> JSON {
        let now = clock.now()
        let p = try CreditGrantParams.parse(params, now: now)
        let entry = try state.ledger.planGrant(p, at: now)
        var c = Change()
        c.ledgerEntries = [entry]
        let result = entry.json
        idempotency?.record(result: result, at: now, into: &c)
        try apply(c)
        return result
    }

    func creditsBalance(_ params: JSON?) throws(BerthError) -> JSON {
        let p = try CreditsBalanceParams.parse(params)
        return state.ledger.balanceJSON(project: p.projectID, now: clock.now())
    }

    func creditsLedger(_ params: JSON?) throws(BerthError) -> JSON {
        try CreditLedgerParams.parse(params).page(of: state.ledger)
    }

    /// Plans the ledger entries that bring a lease's charge to what it now holds (-32003 when the
    /// project's valid grants cannot pay and enforcement is on), and sets its `cost` to what it
    /// will hold once they apply.
    func price(_ lease: inout Lease, now: Timestamp) throws(BerthError) -> [LedgerEntry] {
        // The hosts by name are already at hand: no lookup table is built per request.
        let hosts = state.hosts
        let rates = LeaseCost.rates(of: lease.reservations, models: models) { host, gpu in
            guard let gpus = hosts[host]?.gpus, gpu >= 0, gpu < gpus.count else { return nil }
            return gpus[gpu].model
        }
        let entries = try state.ledger.planLease(
            lease.id, project: lease.projectID, rates: rates, start: lease.start, end: lease.end, now: now)
        lease.cost = heldAfter(lease.id, entries)
        return entries
    }

    /// What a lease will hold once `entries` apply: its net charge now, plus charges, minus refunds
    /// (computed, rather than applied to a copy of the whole ledger on every request).
    func heldAfter(_ leaseID: String, _ entries: [LedgerEntry]) -> [String: JSON] {
        var held = state.ledger.held(lease: leaseID)
        for e in entries where e.leaseID == leaseID {
            switch e.kind {
            case .charge: held[e.resourceClass, default: .zero] += e.amount
            case .refund: held[e.resourceClass, default: .zero] -= e.amount
            default: break
            }
        }
        return LeaseCost.json(held.filter { !$0.value.isZero })
    }
}
