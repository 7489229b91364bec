import BerthContract
import CoreMetrics

/// Counts JSON-RPC requests and their latency by method and result code, through swift-metrics
/// with an injected factory (the daemon passes swift-prometheus's; nothing global is bootstrapped).
public struct RPCMetrics: Sendable {
    public static let requestsLabel = "berth_rpc_requests_total"
    public static let durationLabel = "berth_rpc_request_duration_seconds"

    let factory: any MetricsFactory

    public init(factory: any MetricsFactory) { self.factory = factory }

    /// `method` is one of the contract's methods or `other` (unknown names would be unbounded);
    /// `code` is 0 for a result, else the JSON-RPC error code.
    public func record(method: String, code: Int, duration: Duration) {
        let name = RPCMethod(rawValue: method) != nil ? method : "other"
        let dims = [("method", name), ("code", String(code))]
        Counter(label: RPCMetrics.requestsLabel, dimensions: dims, factory: factory).increment()
        let (s, atto) = duration.components
        let ns = s * 1_000_000_000 + atto / 1_000_000_000
        Timer(label: RPCMetrics.durationLabel, dimensions: dims, factory: factory).recordNanoseconds(ns)
    }
}
