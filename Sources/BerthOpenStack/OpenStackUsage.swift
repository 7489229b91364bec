import BerthCore
import Synchronization

/// Reservation efficiency from Nova: what runs on each active reservation, measured with the
/// periodic reconciliation (so never more often than `reconcile_interval_s`, and not at all when
/// it is 0) and served from memory to the scheduler's usage ticks.
///
/// - host reservation: hosts of the reservation with at least one ACTIVE server of the lease's project;
/// - gpu and instance reservations: ACTIVE servers booted with the reservation's private flavor
///   (its id is the reservation id).
extension OpenStackAdapter: UsageReporting {
    public struct UsageTarget: Sendable {
        public var reservationID: String
        public var projectID: String
        public var kind: String
        public var hosts: [String]

        public init(reservationID: String, projectID: String, kind: String, hosts: [String]) {
            self.reservationID = reservationID
            self.projectID = projectID
            self.kind = kind
            self.hosts = hosts
        }
    }

    public func reservationUsage() -> [String: Int64] { measuredUsage.withLock { $0 } }

    /// Counts the servers on each target; a Nova error keeps the previous measurement (logged).
    public func measureUsage(_ targets: [UsageTarget]) async {
        do throws(OpenStackError) {
            let nova = try connection().nova
            var out: [String: Int64] = [:]
            for t in targets {
                if t.kind == "host" {
                    var busy: Int64 = 0
                    for h in t.hosts {
                        let servers = try await nova.servers([
                            ("host", h), ("project_id", t.projectID), ("status", "ACTIVE"),
                        ])
                        if !servers.isEmpty { busy += 1 }
                    }
                    out[t.reservationID] = busy
                } else {
                    out[t.reservationID] = Int64(
                        try await nova.servers([("flavor", t.reservationID), ("status", "ACTIVE")]).count)
                }
            }
            measuredUsage.withLock { $0 = out }
        } catch {
            logger.warning("could not measure reservation usage in Nova", metadata: ["error": "\(error)"])
        }
    }
}
