/// Where outbox actions go. Each `perform` must be idempotent: delivery is at least once.
public protocol CloudAdapter: Sendable {
    var name: String { get }
    /// False while the cloud cannot be reached or refuses our credentials (`system.health`).
    var isHealthy: Bool { get }
    func perform(_ action: OutboxAction) async throws
}
