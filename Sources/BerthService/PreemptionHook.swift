import BerthCore
import BerthJSON
import Foundation
import Synchronization

/// Runs the operator's preemption hook (e.g. `contrib/slurm/berth-slurm-hook`) for queued
/// `hook.preemption` actions. It is delivered by its own outbox worker, so a slow or failing hook
/// is retried with backoff and never holds up the daemon or the cloud's actions.
///
/// Invocation: `argv = command + [event type]`, with berthd's environment plus `BERTH_EVENT`,
/// `BERTH_PREEMPTIBLE_ID`, `BERTH_HOST`, `BERTH_SLURM_NODE`, `BERTH_PROJECT_ID`, `BERTH_PREEMPT_AT`,
/// `BERTH_NEEDED_AT`, `BERTH_NEEDED_UNTIL`, `BERTH_LEASE_ID` and `BERTH_EVENT_JSON`. Exit status 0
/// is success; anything else (or running past the timeout) is a failure with the output's tail.
public final class PreemptionHook: CloudAdapter {
    public struct Settings: Sendable, Equatable {
        public var command: [String]
        public var timeout: Duration
        public init(command: [String], timeout: Duration = .seconds(30)) {
            self.command = command
            self.timeout = timeout
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private let settings: Mutex<Settings?>

    public init(_ settings: Settings?) { self.settings = Mutex(settings) }

    /// Takes effect for the next run (SIGHUP reload).
    public func update(_ s: Settings?) { settings.withLock { $0 = s } }

    public var current: Settings? { settings.withLock { $0 } }

    public var name: String { "hook" }
    public var isHealthy: Bool { true }

    /// Environment variables for one action's payload.
    public static func environment(for action: OutboxAction) -> [String: String] {
        let p = action.payload
        func s(_ k: String) -> String { p[k]?.stringValue ?? "" }
        return [
            "BERTH_EVENT": s("event"), "BERTH_PREEMPTIBLE_ID": s("preemptible_id"), "BERTH_HOST": s("host"),
            "BERTH_SLURM_NODE": s("slurm_node"), "BERTH_PROJECT_ID": s("project_id"),
            "BERTH_PREEMPT_AT": s("preempt_at"),
            "BERTH_NEEDED_AT": s("needed_at"), "BERTH_NEEDED_UNTIL": s("needed_until"), "BERTH_LEASE_ID": s("lease_id"),
            "BERTH_EVENT_JSON": s("event_json"), "BERTH_ACTION_ID": action.id,
        ]
    }

    public func perform(_ action: OutboxAction) async throws {
        guard let settings = current, let program = settings.command.first else {
            // Queued while a hook was configured, removed since: nothing to run.
            return
        }
        guard access(program, X_OK) == 0 else {
            throw Failure(
                description: "hook command \(program) is missing or not executable: \(String(cString: strerror(errno)))"
            )
        }
        let event = action.payload["event"]?.stringValue ?? action.kind
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = Array(settings.command.dropFirst()) + [event]
        process.environment = ProcessInfo.processInfo.environment.merging(PreemptionHook.environment(for: action)) {
            $1
        }
        // Output goes to a temporary file (a pipe could fill and stall the hook), read back on failure.
        let outputPath = NSTemporaryDirectory() + "berth-hook-\(action.id)-\(action.attempts).log"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        defer { try? output.close() }
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { p in
            exited.continuation.yield(p.terminationStatus)
            exited.continuation.finish()
        }
        do {
            try process.run()
        } catch {
            throw Failure(description: "cannot start hook \(program): \(error)")
        }
        let status: Int32? = await withTaskGroup(of: Int32?.self) { group in
            group.addTask {
                var it = exited.stream.makeAsyncIterator()
                return await it.next()
            }
            group.addTask {
                try? await Task.sleep(for: settings.timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let status else {
            process.terminate()
            let pid = process.processIdentifier
            try? await Task.sleep(for: .seconds(2))
            if process.isRunning { kill(pid, SIGKILL) }
            throw Failure(description: "hook \(program) \(event) ran longer than \(settings.timeout) and was stopped")
        }
        if status != 0 {
            let tail = PreemptionHook.tail(ofFile: outputPath, bytes: 2048)
            throw Failure(
                description: "hook \(program) \(event) exited with status \(status)\(tail.isEmpty ? "" : ": \(tail)")")
        }
    }

    static func tail(ofFile path: String, bytes: Int) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        let text = String(decoding: data.suffix(bytes), as: UTF8.self)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
