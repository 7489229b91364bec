/// An adapter capability: how much of each active reservation is actually in use (servers
/// running on it), for the reservation-efficiency metrics. Answered from memory or a local file:
/// the scheduler samples it synchronously on every usage tick.
public protocol UsageReporting: Sendable {
    /// Reservation id → units in use (hosts with a server, GPU instances with a server, instance
    /// slots with a server); reservations left out use nothing.
    func reservationUsage() -> [String: Int64]
}
