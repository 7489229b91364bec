import BerthCore
import BerthJSON
import Synchronization

/// Where outbox actions go. Each `perform` must be idempotent: delivery is at least once.
public protocol CloudAdapter: Sendable {
    var name: String { get }
    /// False while the cloud cannot be reached or refuses our credentials (`system.health`).
    var isHealthy: Bool { get }
    func perform(_ action: OutboxAction) async throws
}

/// An adapter error that knows when to try again (a server's `Retry-After`): the outbox waits at
/// least that long, and at least its own backoff.
public protocol RetryAfterHinting: Error {
    var retryAfterSeconds: Int64? { get }
    /// The cloud refused the request itself (e.g. 400 invalid input): retrying cannot help, so the
    /// action fails at once, visibly, instead of after every backoff.
    var isPermanent: Bool { get }
}

extension RetryAfterHinting {
    public var isPermanent: Bool { false }
}

/// The embedded default: an in-process cloud that applies actions to its own model and records
/// them, so the whole daemon runs and can be observed without OpenStack.
public final class SimulatedCloud: CloudAdapter {
    public struct Record: Sendable, Hashable {
        public var actionID: String
        public var kind: String
        public var leaseID: String?
        public var hosts: [String]
    }

    struct State {
        /// Hosts placed in each lease's (simulated) aggregate.
        var aggregates: [String: [String]] = [:]
        var log: [Record] = []
        var done: Set<String> = []
    }

    private let state = Mutex(State())

    public init() {}

    public var name: String { "simulator" }
    public var isHealthy: Bool { true }

    public func perform(_ action: OutboxAction) async throws {
        let hosts = (action.payload["hosts"]?.arrayValue ?? []).compactMap(\.stringValue)
        state.withLock { s in
            guard s.done.insert(action.id).inserted else { return }  // a redelivery changes nothing
            switch action.kind {
            case "lease.start", "lease.update":
                if let id = action.leaseID { s.aggregates[id] = hosts }
            case "lease.end":
                if let id = action.leaseID { s.aggregates[id] = nil }
            default:
                break
            }
            s.log.append(Record(actionID: action.id, kind: action.kind, leaseID: action.leaseID, hosts: hosts))
        }
    }

    public var aggregates: [String: [String]] { state.withLock { $0.aggregates } }
    public var log: [Record] { state.withLock { $0.log } }
}
