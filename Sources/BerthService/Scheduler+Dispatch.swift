import BerthContract
import BerthCore
import BerthJSON

extension Scheduler {
    /// Runs one scheduler method and returns its result once everything it did or read is on disk
    /// (group commit: the actor serves other requests meanwhile). A change that could not be
    /// stored answers `unavailable`.
    public nonisolated func call(_ method: RPCMethod, _ params: JSON?) async throws(BerthError) -> JSON {
        let (result, ticket) = await perform(method, params)
        try await commits.waitDurable(ticket)
        return try result.get()
    }

    /// Runs one method inside the actor: its result (or error), and the ticket of the last change
    /// in memory when it ran, which the reply must wait for (an error, too, may rest on changes
    /// not yet on disk, e.g. `no_capacity` because of a lease still being written).
    func perform(_ method: RPCMethod, _ params: JSON?) -> (Result<JSON, BerthError>, GroupCommit.Ticket) {
        do throws(BerthError) {
            try ensureRestored()
            let result = try dispatch(method, params)
            return (.success(result), memoryTicket)
        } catch {
            return (.failure(error), memoryTicket)
        }
    }

    /// Replay of an idempotent call is checked here, inside the actor, so two concurrent retries
    /// with the same key cannot both act (even while the first one's record is being written).
    ///
    /// The `switch` is exhaustive over the contract's methods: a method added to the schema does
    /// not build until it is routed here.
    func dispatch(_ method: RPCMethod, _ params: JSON?) throws(BerthError) -> JSON {
        var idem: IdempotencyContext? = nil
        if method.acceptsIdempotencyKey {
            if let v = params?["idempotency_key"], !v.isNull {
                guard let s = v.stringValue, !s.isEmpty, s.utf8.count <= 255 else {
                    throw .invalidParam("idempotency_key", "expected a non-empty string of at most 255 bytes")
                }
                idem = IdempotencyContext(method: method.rawValue, params: params)
                // A dry run is never recorded: it acts on nothing.
                if params?["dry_run"]?.boolValue == true { idem = nil }
                if let idem {
                    let pending = pendingIdempotency[idem.method + "\u{0}" + idem.key].map { ($0.params, $0.result) }
                    if let replay = try idem.replay(pending: pending, from: store) { return replay }
                }
            }
        }
        switch method {
        case .hostCreate: return try hostCreate(params, idempotency: idem)
        case .hostGet: return try hostGet(params)
        case .hostList: return try hostList(params)
        case .hostUpdate: return try hostUpdate(params, idempotency: idem)
        case .hostDelete: return try hostDelete(params, idempotency: idem)
        case .leaseCreate: return try leaseCreate(params, idempotency: idem)
        case .leaseGet: return try leaseGet(params)
        case .leaseList: return try leaseList(params)
        case .leaseUpdate: return try leaseUpdate(params, idempotency: idem)
        case .leaseDelete: return try leaseDelete(params, idempotency: idem)
        case .availabilityFind: return try availabilityFind(params)
        case .creditsGrant: return try creditsGrant(params, idempotency: idem)
        case .creditsBalance: return try creditsBalance(params)
        case .creditsLedger: return try creditsLedger(params)
        case .calendarGet: return try calendarGet(params)
        case .preemptibleCreate: return try preemptibleCreate(params, idempotency: idem)
        case .preemptibleGet: return try preemptibleGet(params)
        case .preemptibleList: return try preemptibleList(params)
        case .preemptibleDelete: return try preemptibleDelete(params, idempotency: idem)
        case .preemptibleHorizon: return try preemptibleHorizon(params)
        case .clockNow: return try clockNow(params)
        case .clockSet: return try clockSet(params)
        case .clockAdvance: return try clockAdvance(params)
        case .rpcDiscover, .systemHealth, .eventsList, .eventsSubscribe, .actionsList:
            // Served by `BerthMethods` without the actor (discovery, health, the store's reads).
            throw BerthError(.internalError, "method \(method.rawValue) is not a scheduler method")
        }
    }
}
