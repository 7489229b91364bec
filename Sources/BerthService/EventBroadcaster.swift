import BerthCore
import BerthJSON
import BerthRPC
import Synchronization

/// Pushes committed events to the connections that subscribed, as JSON-RPC notifications.
///
/// Publishing never waits on a slow client: each connection's sink buffers, and a closed
/// connection's subscriptions are dropped.
public final class EventBroadcaster: Sendable {
    struct Subscription {
        var id: String
        var connection: RPCConnectionID
        var sink: RPCNotificationSink
        var patterns: [String]
    }

    private let subscriptions = Mutex<[String: Subscription]>([:])

    public init() {}

    public func subscribe(connection: RPCConnectionID, sink: RPCNotificationSink, patterns: [String]) -> String {
        let id = UUIDString.random()
        subscriptions.withLock { $0[id] = Subscription(id: id, connection: connection, sink: sink, patterns: patterns) }
        return id
    }

    public func connectionClosed(_ connection: RPCConnectionID) {
        subscriptions.withLock { subs in subs = subs.filter { $0.value.connection != connection } }
    }

    public var count: Int { subscriptions.withLock { $0.count } }

    /// True while the connection holds a subscription (it is waiting for events, not idle).
    public func hasSubscriptions(_ connection: RPCConnectionID) -> Bool {
        subscriptions.withLock { subs in subs.values.contains { $0.connection == connection } }
    }

    public func publish(_ events: [LifecycleEvent]) {
        guard !events.isEmpty else { return }
        let subs = subscriptions.withLock { Array($0.values) }
        var dead: [String] = []
        for s in subs {
            for e in events where s.patterns.isEmpty || s.patterns.contains(where: { e.matches(pattern: $0) }) {
                var params = e.json
                if case .object(var o) = params {
                    o["subscription"] = .string(s.id)
                    params = .object(o)
                }
                if !s.sink.send(method: "event", params: params) {
                    dead.append(s.id)
                    break
                }
            }
        }
        if !dead.isEmpty { subscriptions.withLock { subs in for d in dead { subs[d] = nil } } }
    }
}
