import BerthCore
import BerthJSON

/// An event read back from its stored JSON document.
extension LifecycleEvent {
    public init?(json: JSON) {
        guard let seq = json["seq"]?.intValue, let type = json["type"]?.stringValue,
            let at = json["at"]?.stringValue.flatMap(Timestamp.init(rfc3339:))
        else { return nil }
        self.init(
            seq: seq, type: type, at: at, leaseID: json["lease_id"]?.stringValue,
            projectID: json["project_id"]?.stringValue, host: json["host"]?.stringValue,
            actionID: json["action_id"]?.stringValue, preemptibleID: json["preemptible_id"]?.stringValue,
            data: json["data"]?.objectValue ?? [:])
    }
}
