import BerthCore
import BerthJSON

extension Scheduler {
    /// Methods that change state and so honour `idempotency_key`.
    static let mutatingMethods: Set<String> = [
        "host.create", "host.update", "host.delete", "lease.create", "lease.update", "lease.delete", "credits.grant",
        "preemptible.create", "preemptible.delete",
    ]

    /// Runs one scheduler method and returns its result once everything it did or read is on disk
    /// (group commit: the actor serves other requests meanwhile). A change that could not be
    /// stored answers `unavailable`.
    public nonisolated func call(_ method: String, _ params: JSON?) async throws(BerthError) -> JSON {
        let (result, ticket) = await perform(method, params)
        try await commits.waitDurable(ticket)
        return try result.get()
    }

    /// Runs one method inside the actor: its result (or error), and the ticket of the last change
    /// in memory when it ran, which the reply must wait for (an error, too, may rest on changes
    /// not yet on disk, e.g. `no_capacity` because of a lease still being written).
    func perform(_ method: String, _ params: JSON?) -> (Result<JSON, BerthError>, GroupCommit.Ticket) {
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
    func dispatch(_ method: String, _ params: JSON?) throws(BerthError) -> JSON {
        var idem: IdempotencyContext? = nil
        if Scheduler.mutatingMethods.contains(method) {
            if let v = params?["idempotency_key"], !v.isNull {
                guard let s = v.stringValue, !s.isEmpty, s.utf8.count <= 255 else {
                    throw .invalidParam("idempotency_key", "expected a non-empty string of at most 255 bytes")
                }
                idem = IdempotencyContext(method: method, params: params)
                // A dry run is never recorded: it acts on nothing.
                if params?["dry_run"]?.boolValue == true { idem = nil }
                if let idem {
                    let pending = pendingIdempotency[idem.method + "\u{0}" + idem.key].map { ($0.params, $0.result) }
                    if let replay = try idem.replay(pending: pending, from: store) { return replay }
                }
            }
        }
        switch method {
        case "host.create": return try hostCreate(params, idempotency: idem)
        case "host.get": return try hostGet(params)
        case "host.list": return try hostList(params)
        case "host.update": return try hostUpdate(params, idempotency: idem)
        case "host.delete": return try hostDelete(params, idempotency: idem)
        case "lease.create": return try leaseCreate(params, idempotency: idem)
        case "lease.get": return try leaseGet(params)
        case "lease.list": return try leaseList(params)
        case "lease.update": return try leaseUpdate(params, idempotency: idem)
        case "lease.delete": return try leaseDelete(params, idempotency: idem)
        case "availability.find": return try availabilityFind(params)
        case "credits.grant": return try creditsGrant(params, idempotency: idem)
        case "credits.balance": return try creditsBalance(params)
        case "credits.ledger": return try creditsLedger(params)
        case "calendar.get": return try calendarGet(params)
        case "preemptible.create": return try preemptibleCreate(params, idempotency: idem)
        case "preemptible.get": return try preemptibleGet(params)
        case "preemptible.list": return try preemptibleList(params)
        case "preemptible.delete": return try preemptibleDelete(params, idempotency: idem)
        case "preemptible.horizon": return try preemptibleHorizon(params)
        case "clock.now": return try clockNow(params)
        case "clock.set": return try clockSet(params)
        case "clock.advance": return try clockAdvance(params)
        default:
            throw BerthError(.internalError, "method \(method) is not a scheduler method")
        }
    }
}
