import Testing

@testable import BerthSystemd

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Everything that reads or writes process environment variables (NOTIFY_SOCKET, WATCHDOG_*,
/// LISTEN_*, JOURNAL_STREAM) lives under this one serialized suite: the environment is global, and
/// `.serialized` also applies to the nested suites.
@Suite("Process environment", .serialized)
struct EnvironmentDependentTests {
    @Suite("sd_notify")
    struct Notifier {
        @Test func disabledWithoutNotifySocket() throws {
            let socket = try NotifySocket()
            let enabled = withEnvironment(["NOTIFY_SOCKET": nil]) {
                let notifier = SystemdNotifier()
                notifier.ready(status: "ignored")
                notifier.watchdogPing()
                #expect(notifier.send("READY=1") == false)
                return notifier.isEnabled
            }
            #expect(enabled == false)
            #expect(socket.receiveAll().isEmpty)
        }

        @Test func enabledWithNotifySocket() throws {
            let socket = try NotifySocket()
            let enabled = withEnvironment(["NOTIFY_SOCKET": socket.path]) { SystemdNotifier().isEnabled }
            #expect(enabled)
        }

        @Test func ready() throws {
            let socket = try NotifySocket()
            withEnvironment(["NOTIFY_SOCKET": socket.path]) { SystemdNotifier().ready() }
            #expect(socket.receiveAll() == ["READY=1"])
        }

        @Test func readyWithStatusIsOneDatagram() throws {
            let socket = try NotifySocket()
            withEnvironment(["NOTIFY_SOCKET": socket.path]) {
                SystemdNotifier().ready(status: "serving, 3 hosts")
            }
            #expect(socket.receiveAll() == ["READY=1\nSTATUS=serving, 3 hosts"])
        }

        @Test func status() throws {
            let socket = try NotifySocket()
            withEnvironment(["NOTIFY_SOCKET": socket.path]) { SystemdNotifier().status("catching up 12 events") }
            #expect(socket.receiveAll() == ["STATUS=catching up 12 events"])
        }

        @Test func statusCannotInjectAssignments() throws {
            let socket = try NotifySocket()
            withEnvironment(["NOTIFY_SOCKET": socket.path]) { SystemdNotifier().status("a\nREADY=1\r\nb") }
            #expect(socket.receiveAll() == ["STATUS=a READY=1 b"])
        }

        @Test func watchdogPing() throws {
            let socket = try NotifySocket()
            withEnvironment(["NOTIFY_SOCKET": socket.path]) { SystemdNotifier().watchdogPing() }
            #expect(socket.receiveAll() == ["WATCHDOG=1"])
        }

        @Test func stopping() throws {
            let socket = try NotifySocket()
            withEnvironment(["NOTIFY_SOCKET": socket.path]) {
                let notifier = SystemdNotifier()
                notifier.stopping()
                notifier.stopping(status: "draining 2 connections")
            }
            #expect(socket.receiveAll() == ["STOPPING=1", "STOPPING=1\nSTATUS=draining 2 connections"])
        }

        @Test func reloadingCarriesMonotonicTimestamp() throws {
            let socket = try NotifySocket()
            let before = SystemdNotifier.monotonicMicroseconds()
            withEnvironment(["NOTIFY_SOCKET": socket.path]) { SystemdNotifier().reloading() }
            let after = SystemdNotifier.monotonicMicroseconds()

            let datagrams = socket.receiveAll()
            try #require(datagrams.count == 1)
            let lines = datagrams[0].split(separator: "\n", omittingEmptySubsequences: false)
            try #require(lines.count == 2)
            #expect(lines[0] == "RELOADING=1")
            #expect(lines[1].hasPrefix("MONOTONIC_USEC="))
            let usec = try #require(UInt64(lines[1].dropFirst("MONOTONIC_USEC=".count)))
            #expect(before <= usec && usec <= after)
        }

        @Test func rawSendAndOrder() throws {
            let socket = try NotifySocket()
            let sent = withEnvironment(["NOTIFY_SOCKET": socket.path]) {
                let notifier = SystemdNotifier()
                let sent = notifier.send("READY=1\nSTATUS=x")
                notifier.watchdogPing()
                notifier.stopping()
                return sent
            }
            #expect(sent)
            #expect(socket.receiveAll() == ["READY=1\nSTATUS=x", "WATCHDOG=1", "STOPPING=1"])
        }

        @Test func notifySocketIsKeptForLaterCalls() throws {
            let socket = try NotifySocket()
            let stillSet = withEnvironment(["NOTIFY_SOCKET": socket.path]) {
                SystemdNotifier().ready()
                return environment("NOTIFY_SOCKET") == socket.path
            }
            #expect(stillSet)
            #expect(socket.receiveAll() == ["READY=1"])
        }
    }

    @Suite("Watchdog")
    struct Watchdog {
        static let otherPID = getpid() == 1 ? "2" : "1"

        @Test func halfOfWatchdogUsecForThisProcess() {
            let interval = withEnvironment(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid())"]) {
                SystemdNotifier().watchdogPingInterval()
            }
            #expect(interval == .seconds(15))
        }

        @Test func withoutWatchdogPidAppliesToAnyProcess() {
            let interval = withEnvironment(["WATCHDOG_USEC": "3000001", "WATCHDOG_PID": nil]) {
                SystemdNotifier().watchdogPingInterval()
            }
            #expect(interval == .microseconds(1_500_000))
        }

        @Test func otherProcessWatchdogIsIgnored() {
            let interval = withEnvironment(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": Self.otherPID]) {
                SystemdNotifier().watchdogPingInterval()
            }
            #expect(interval == nil)
        }

        @Test(arguments: [nil, "", "0", "soon", "-5"] as [String?])
        func noOrInvalidWatchdogUsec(_ value: String?) {
            let interval = withEnvironment(["WATCHDOG_USEC": value, "WATCHDOG_PID": "\(getpid())"]) {
                SystemdNotifier().watchdogPingInterval()
            }
            #expect(interval == nil)
        }

        @Test func environmentIsLeftInPlace() {
            let (first, second) = withEnvironment(["WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "\(getpid())"]) {
                (SystemdNotifier().watchdogPingInterval(), SystemdNotifier().watchdogPingInterval())
            }
            #expect(first == .seconds(5))
            #expect(second == .seconds(5))
        }
    }

    @Suite("Socket activation")
    struct Activation {
        @Test func noSocketsWithoutListenFds() {
            let fds = withEnvironment(["LISTEN_FDS": nil, "LISTEN_PID": nil, "LISTEN_FDNAMES": nil]) {
                SocketActivation.listenFileDescriptors()
            }
            #expect(fds.isEmpty)
        }

        // Sockets meant for another process (a parent that was activated and forked us) are not ours,
        // and the variables are cleared so they are not passed further down either.
        @Test func socketsForAnotherProcessAreIgnoredAndEnvironmentCleared() {
            let other = getpid() == 1 ? "2" : "1"
            let (fds, left) = withEnvironment(["LISTEN_FDS": "1", "LISTEN_PID": other, "LISTEN_FDNAMES": "berth"]) {
                (
                    SocketActivation.listenFileDescriptors(),
                    [environment("LISTEN_FDS"), environment("LISTEN_PID"), environment("LISTEN_FDNAMES")]
                )
            }
            #expect(fds.isEmpty)
            #expect(left == [nil, nil, nil])
        }
    }

    @Suite("Journal detection")
    struct Detection {
        @Test func notJournalWithoutJournalStream() {
            let result = withEnvironment(["JOURNAL_STREAM": nil]) { JournalDetection.stderrIsJournal() }
            #expect(result == false)
        }

        @Test(arguments: ["", "garbage", "1", "0:0", "1:2:3"])
        func notJournalWhenJournalStreamNamesAnotherFile(_ value: String) {
            let result = withEnvironment(["JOURNAL_STREAM": value]) { JournalDetection.stderrIsJournal() }
            #expect(result == false)
        }

        @Test func journalWhenJournalStreamNamesStderr() throws {
            var info = stat()
            try #require(fstat(STDERR_FILENO, &info) == 0)
            let result = withEnvironment(["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)"]) {
                JournalDetection.stderrIsJournal()
            }
            #expect(result)
        }
    }
}
