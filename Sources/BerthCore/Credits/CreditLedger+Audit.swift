/// The ledger checked against itself: its entries alone against the incremental state.
extension CreditLedger {
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
            if t.granted != granted[a] ?? .zero {
                problems.append("\(a): granted \(t.granted) != entries \(granted[a] ?? .zero)")
            }
            if t.spent != spent[a] ?? .zero {
                problems.append("\(a): spent \(t.spent) != entries \(spent[a] ?? .zero)")
            }
            if t.unfunded != unfunded[a] ?? .zero { problems.append("\(a): unfunded \(t.unfunded) != entries") }
            if t.unfunded.isNegative { problems.append("\(a): negative unfunded \(t.unfunded)") }
            let rem = (grantIDsByAccount[a] ?? []).reduce(CreditAmount.zero) { $0 + grants[$1]!.remaining }
            if t.granted - t.spent != rem - t.unfunded {
                problems.append(
                    "\(a): granted − spent \(t.granted - t.spent) != remaining − unfunded \(rem - t.unfunded)")
            }
        }
        for (g, s) in grants {
            if s.remaining != remaining[g] ?? .zero {
                problems.append("grant \(g): remaining \(s.remaining) != entries \(remaining[g] ?? .zero)")
            }
            if s.remaining.isNegative { problems.append("grant \(g): negative remaining \(s.remaining)") }
            if s.remaining > s.amount {
                problems.append("grant \(g): remaining \(s.remaining) above its amount \(s.amount)")
            }
        }
        for (l, h) in holdings where h.held != (held[l] ?? [:]).filter({ !$0.value.isZero }) {
            problems.append("lease \(l): holds \(h.held) but entries say \(held[l] ?? [:])")
        }
        return problems
    }
}
