import ArgumentParser
import BerthClient
import BerthJSON

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `berthctl`: the operator's command line for berthd.
///
/// Exit status: 0 success, 1 the daemon answered with an error (or the connection broke),
/// 2 usage error, 3 the daemon could not be reached.
public struct BerthCtlMain: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "berthctl",
        abstract: "Operate berthd, the Berth reservation scheduler, over its JSON-RPC socket.",
        discussion: """
            Durations accept seconds or units (90, 30m, 2h, 1d, 1h30m). Times are RFC 3339 \
            (2030-01-01T10:00:00Z). Exit status: 0 ok, 1 error reply from berthd, 2 usage error, \
            3 berthd unreachable.
            """,
        subcommands: [
            HostCommand.self, LeaseCommand.self, AvailabilityCommand.self, CalendarCommand.self,
            EventsCommand.self, ActionsCommand.self, ClockCommand.self, HealthCommand.self,
            DiscoverCommand.self, CreditsCommand.self, PreemptibleCommand.self, CallCommand.self,
        ]
    )

    @OptionGroup var global: GlobalOptions

    public init() {}

    public enum ExitStatus {
        public static let ok: Int32 = 0
        public static let failure: Int32 = 1
        public static let usage: Int32 = 2
        public static let unreachable: Int32 = 3
    }

    /// Parses the process's arguments, runs the command and exits with its status.
    public static func main() {
        let status = run(arguments: Array(CommandLine.arguments.dropFirst()))
        fflush(nil)
        terminate(status)
    }

    /// Parses `arguments`, runs the command and returns the exit status; messages go to stdout/stderr.
    public static func run(arguments: [String]) -> Int32 {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            return ExitStatus.ok
        } catch let e as RPCErrorResponse {
            for l in Output.errorLines(e) { Output.err(l) }
            return ExitStatus.failure
        } catch let e as BerthClientError {
            Output.err("error: \(e.description)")
            if case .connect = e { return ExitStatus.unreachable }
            return ExitStatus.failure
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { Output.out(message) }
                return ExitStatus.ok
            }
            if !message.isEmpty { Output.err(message) }
            if code == .validationFailure { return ExitStatus.usage }
            return code.rawValue
        }
    }
}

private func terminate(_ status: Int32) -> Never {
    exit(status)
}
