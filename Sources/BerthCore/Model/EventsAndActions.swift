import BerthJSON

/// A durable, ordered record of something that happened (`events.list`, subscriptions).
public struct LifecycleEvent: Sendable, Hashable {
    public var seq: Int64
    public var type: String
    public var at: Timestamp
    public var leaseID: String?
    public var projectID: String?
    public var host: String?
    public var actionID: String?
    public var preemptibleID: String?
    public var data: [String: JSON]

    public init(
        seq: Int64 = 0, type: String, at: Timestamp, leaseID: String? = nil, projectID: String? = nil,
        host: String? = nil, actionID: String? = nil, preemptibleID: String? = nil, data: [String: JSON] = [:]
    ) {
        self.preemptibleID = preemptibleID
        self.seq = seq
        self.type = type
        self.at = at
        self.leaseID = leaseID
        self.projectID = projectID
        self.host = host
        self.actionID = actionID
        self.data = data
    }

    public var json: JSON {
        var o: [String: JSON] = ["seq": .int(seq), "type": .string(type), "at": .string(at.rfc3339)]
        if let leaseID { o["lease_id"] = .string(leaseID) }
        if let projectID { o["project_id"] = .string(projectID) }
        if let host { o["host"] = .string(host) }
        if let actionID { o["action_id"] = .string(actionID) }
        if let preemptibleID { o["preemptible_id"] = .string(preemptibleID) }
        if !data.isEmpty { o["data"] = .object(data) }
        return .object(o)
    }

    /// Whether the event's type matches a pattern such as `lease.*` or `host.down`.
    public func matches(pattern: String) -> Bool {
        if pattern == "*" { return true }
        if pattern.hasSuffix(".*") { return type.hasPrefix(pattern.dropLast(1)) }
        return type == pattern
    }
}

public enum ActionStatus: String, Sendable, CaseIterable {
    case pending, running, done, failed
}

/// Something owed to the cloud, written in the same transaction as the change that owes it.
public struct OutboxAction: Sendable, Hashable {
    public var id: String
    public var kind: String
    public var target: String
    public var leaseID: String?
    public var status: ActionStatus
    public var attempts: Int64
    public var lastError: String?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var dueAt: Timestamp
    /// What the adapter needs to act (hosts, project, ...), frozen at enqueue time.
    public var payload: [String: JSON]

    public init(
        id: String, kind: String, target: String, leaseID: String?, createdAt: Timestamp, payload: [String: JSON]
    ) {
        self.id = id
        self.kind = kind
        self.target = target
        self.leaseID = leaseID
        self.status = .pending
        self.attempts = 0
        self.lastError = nil
        self.createdAt = createdAt
        self.updatedAt = createdAt
        self.dueAt = createdAt
        self.payload = payload
    }

    public var json: JSON {
        .object([
            "id": .string(id), "kind": .string(kind), "target": .string(target), "lease_id": JSON(leaseID),
            "status": .string(status.rawValue), "attempts": .int(attempts), "last_error": JSON(lastError),
            "created_at": .string(createdAt.rfc3339), "updated_at": .string(updatedAt.rfc3339),
            "due_at": .string(dueAt.rfc3339), "payload": .object(payload),
        ])
    }
}

extension ParamReader {
    /// A list of event type patterns as the contract spells them (`lease.created`, a family
    /// `lease.*`, or `*`): anything else would be taken and silently match nothing.
    public mutating func eventTypePatterns(_ key: String) -> [String]? {
        guard let list = stringArray(key) else { return nil }
        if list.isEmpty {
            fail(key, "must name at least one event type pattern; leave it out (or use [\"*\"]) for every event")
        }
        for (i, p) in list.enumerated() where !ParamReader.isEventTypePattern(p) {
            fail(
                path: "\(fieldPath(key))[\(i)]",
                "expected an event type (lease.created), a family (lease.*) or *, got '\(p)'")
        }
        return list
    }

    /// `^(\*|[a-z_]+\.\*|[a-z_]+\.[a-z_]+)$` (schemas/components/EventTypePattern.json).
    static func isEventTypePattern(_ p: String) -> Bool {
        if p == "*" { return true }
        let parts = p.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        func word(_ w: Substring.UTF8View.SubSequence) -> Bool {
            !w.isEmpty
                && w.allSatisfy { ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || $0 == UInt8(ascii: "_") }
        }
        guard parts.count == 2, word(parts[0]) else { return false }
        return parts[1].elementsEqual("*".utf8) || word(parts[1])
    }
}
