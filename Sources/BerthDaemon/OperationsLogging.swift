import BerthContract
import BerthCore
import BerthJSON
import BerthRPC
import BerthService
import Logging

/// Logs every JSON-RPC call with structured metadata, around the real method handler.
///
/// With the journald handler the keys become fields operators filter on: `rpc.method` → RPC_METHOD,
/// `lease.id` → LEASE_ID, `project.id` → PROJECT_ID, `host.name` → HOST_NAME, `rpc.error_code` →
/// RPC_ERROR_CODE (`journalctl -u berthd RPC_METHOD=lease.create PROJECT_ID=p1`). Successful changes
/// (`lease.create`, `host.update`, ...) are logged at `info`, reads at `debug`, refused calls at
/// `info` (`warning` for -32603 internal errors), so the default level keeps an audit trail of
/// changes without one line per read.
struct LoggingRPCHandler: RPCHandler {
    let inner: any RPCHandler
    let logger: Logger

    func admit(_ peer: PeerCredentials) -> RPCError? {
        inner.admit(peer)
    }

    func connectionClosed(_ connection: RPCConnectionID) async {
        await inner.connectionClosed(connection)
    }

    func keepsConnectionOpen(_ connection: RPCConnectionID) -> Bool {
        inner.keepsConnectionOpen(connection)
    }

    func handle(method: String, params: JSON?, context: RPCContext) async throws(RPCError) -> JSON {
        do {
            let result = try await inner.handle(method: method, params: params, context: context)
            let level: Logger.Level = Self.isRead(method) ? .debug : .info
            if logger.logLevel <= level {
                logger.log(
                    level: level, "rpc \(method)",
                    metadata: Self.metadata(method: method, params: params, result: result, peer: context.peer))
            }
            return result
        } catch {
            let level: Logger.Level = error.code == -32603 ? .warning : .info
            if logger.logLevel <= level {
                var m = Self.metadata(method: method, params: params, result: nil, peer: context.peer)
                m["rpc.error_code"] = "\(error.code)"
                if let reason = error.reason { m["rpc.error_reason"] = "\(reason)" }
                logger.log(level: level, "rpc \(method) failed: \(error.message)", metadata: m)
            }
            throw error
        }
    }

    /// Methods that change nothing (the contract's `x-mutating`); only contract methods succeed.
    static func isRead(_ method: String) -> Bool {
        RPCMethod(rawValue: method).map { !$0.isMutating } ?? false
    }

    static func metadata(method: String, params: JSON?, result: JSON?, peer: PeerCredentials) -> Logger.Metadata {
        var m: Logger.Metadata = ["rpc.method": "\(method)", "rpc.peer_uid": "\(peer.uid)"]
        let isLease = method.hasPrefix("lease.")
        let isHost = method.hasPrefix("host.")
        if let id = params?["id"]?.stringValue ?? (isLease ? result?["id"]?.stringValue : nil) {
            if isLease {
                m["lease.id"] = "\(id)"
            } else if method.hasPrefix("preemptible.") {
                m["preemptible.id"] = "\(id)"
            }
        }
        if let project = params?["project_id"]?.stringValue ?? result?["project_id"]?.stringValue {
            m["project.id"] = "\(project)"
        }
        if isHost, let name = params?["name"]?.stringValue {
            m["host.name"] = "\(name)"
        } else if let host = params?["host"]?.stringValue {
            m["host.name"] = "\(host)"
        }
        if method == RPCMethod.preemptibleCreate.rawValue, let id = result?["id"]?.stringValue {
            m["preemptible.id"] = "\(id)"
        }
        return m
    }
}

/// Logs every committed lifecycle event (lease started/ended, preemption, host down, action failed)
/// with its lease, project, host and preemptible as metadata, by subscribing to the broadcaster like
/// a client would: so timer-driven transitions, which no RPC call causes, reach the journal too.
enum EventLogging {
    /// A connection id no socket connection will get (the server counts up from 0).
    static let connection = RPCConnectionID(rawValue: UInt64.max)

    static func subscribe(_ broadcaster: EventBroadcaster, logger: Logger) {
        let sink = RPCNotificationSink { _, params in
            let type = params["type"]?.stringValue ?? "event"
            let level: Logger.Level = type == "action.failed" || type == "host.down" ? .warning : .info
            guard logger.logLevel <= level else { return true }
            var m: Logger.Metadata = ["event.type": "\(type)"]
            if let v = params["seq"]?.intValue { m["event.seq"] = "\(v)" }
            let keys = [
                ("lease_id", "lease.id"), ("project_id", "project.id"), ("host", "host.name"),
                ("preemptible_id", "preemptible.id"), ("action_id", "action.id"),
            ]
            for (field, key) in keys {
                if let v = params[field]?.stringValue { m[key] = "\(v)" }
            }
            logger.log(level: level, "event \(type)", metadata: m)
            return true
        }
        _ = broadcaster.subscribe(connection: connection, sink: sink, patterns: [])
    }
}
