import BerthCore
import BerthJSON
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

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
    /// JSON file `{ "<reservation id>": units in use, ... }` standing in for the servers a real
    /// cloud would report (the simulator runs no servers); re-read at every usage tick.
    let usageFile: String?
    /// The flavors and compute nodes the simulated cloud has (config `simulator.flavors` and
    /// `simulator.hypervisors`; the demo seeds a few).
    let flavors: [String: CloudFlavor]
    let hypervisors: [String: Hypervisor]

    public init(usageFile: String? = nil, flavors: [CloudFlavor] = [], hypervisors: [Hypervisor] = []) {
        self.usageFile = usageFile
        self.flavors = Dictionary(flavors.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        self.hypervisors = Dictionary(hypervisors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

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

extension SimulatedCloud: UsageReporting {
    /// The usage file's counts; none (nothing in use) when there is no file or it cannot be read.
    public func reservationUsage() -> [String: Int64] {
        guard let usageFile, let f = fopen(usageFile, "r") else { return [:] }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes.append(contentsOf: buf[0..<n])
        }
        guard let json = try? JSONParser.parse(bytes), case .object(let m) = json else { return [:] }
        return m.compactMapValues { $0.intValue }
    }
}

extension SimulatedCloud: CloudCatalog {
    public func flavor(id: String) async throws(BerthError) -> CloudFlavor? { flavors[id] }
    public func hypervisor(named name: String) async throws(BerthError) -> Hypervisor? { hypervisors[name] }
}
