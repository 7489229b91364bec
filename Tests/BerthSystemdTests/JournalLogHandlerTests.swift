import Logging
import Synchronization
import Testing

@testable import BerthSystemd

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Collects the entries a handler would have sent to journald.
final class CapturedEntries: Sendable {
    private let entries = Mutex<[[String]]>([])

    var all: [[String]] { entries.withLock { $0 } }

    func append(_ fields: [String]) { entries.withLock { $0.append(fields) } }

    func logger(label: String = "berth.test", identifier: String = "berthd") -> Logger {
        Logger(label: label) { label in
            JournalLogHandler(
                label: label,
                identifier: identifier,
                metadataProvider: nil,
                sink: .capture { fields in self.append(fields) }
            )
        }
    }
}

struct ErrorForTest: Error, CustomStringConvertible {
    var description: String { "disk full" }
}

/// The value of the one field called `name`; fails the test if there are none or several.
func field(_ name: String, in entry: [String]) -> String? {
    let values = entry.filter { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    #expect(values.count == 1, "\(name) appears \(values.count) times in \(entry)")
    return values.first
}

@Suite("JournalLogHandler")
struct JournalLogHandlerTests {
    @Test func structuredFields() throws {
        let captured = CapturedEntries()
        var logger = captured.logger()
        logger[metadataKey: "host.name"] = "gpu-07"
        let line: UInt = #line + 1
        logger.warning("lease ends soon", metadata: ["lease.id": "L-42"])

        let entries = captured.all
        try #require(entries.count == 1)
        #expect(
            entries[0] == [
                "MESSAGE=lease ends soon",
                "PRIORITY=4",
                "SYSLOG_IDENTIFIER=berthd",
                "CODE_FILE=\(#fileID)",
                "CODE_LINE=\(line)",
                "CODE_FUNC=\(#function)",
                "LOGGER_LABEL=berth.test",
                "LOGGER_SOURCE=BerthSystemdTests",
                "HOST_NAME=gpu-07",
                "LEASE_ID=L-42",
            ]
        )
    }

    @Test func customIdentifier() throws {
        let captured = CapturedEntries()
        captured.logger(identifier: "berth-hook").info("x")
        let entry = try #require(captured.all.first)
        #expect(field("SYSLOG_IDENTIFIER", in: entry) == "berth-hook")
    }

    @Test func statementMetadataWinsOverProviderWhichWinsOverHandler() throws {
        let captured = CapturedEntries()
        var logger = Logger(label: "berth.test") { label in
            JournalLogHandler(
                label: label,
                identifier: "berthd",
                metadataProvider: Logger.MetadataProvider { ["request.id": "from-provider", "project": "astro"] },
                sink: .capture { fields in captured.append(fields) }
            )
        }
        logger[metadataKey: "project"] = "from-handler"
        logger[metadataKey: "host"] = "h1"
        logger.info("x", metadata: ["request.id": "from-statement"])

        let entry = try #require(captured.all.first)
        #expect(field("REQUEST_ID", in: entry) == "from-statement")
        #expect(field("PROJECT", in: entry) == "astro")
        #expect(field("HOST", in: entry) == "h1")
    }

    @Test func attachedError() throws {
        let captured = CapturedEntries()
        captured.logger().error("commit failed", error: ErrorForTest())
        let entry = try #require(captured.all.first)
        #expect(field("PRIORITY", in: entry) == "3")
        #expect(field("ERROR_MESSAGE", in: entry) == "disk full")
        #expect(field("ERROR_TYPE", in: entry) == "BerthSystemdTests.ErrorForTest")
    }

    @Test func nonStringMetadataValues() throws {
        let captured = CapturedEntries()
        captured.logger().info("x", metadata: ["count": .stringConvertible(3), "hosts": ["a", "b"]])
        let entry = try #require(captured.all.first)
        #expect(field("COUNT", in: entry) == "3")
        #expect(field("HOSTS", in: entry) == #"["a", "b"]"#)
    }

    @Test func multiLineMessageStaysOneField() throws {
        let captured = CapturedEntries()
        captured.logger().info("line one\nline two")
        let entry = try #require(captured.all.first)
        #expect(field("MESSAGE", in: entry) == "line one\nline two")
    }

    @Test func metadataCannotOverrideHandlerFields() throws {
        let captured = CapturedEntries()
        captured.logger().info("real", metadata: ["message": "fake", "priority": "0", "": "dropped"])
        let entry = try #require(captured.all.first)
        #expect(field("MESSAGE", in: entry) == "real")
        #expect(field("PRIORITY", in: entry) == "6")
        #expect(field("META_MESSAGE", in: entry) == "fake")
        #expect(field("META_PRIORITY", in: entry) == "0")
        #expect(entry.count == 10)
    }

    @Test func levelFiltering() {
        let captured = CapturedEntries()
        var logger = captured.logger()
        #expect(logger.logLevel == .info)
        logger.debug("hidden")
        logger.logLevel = .trace
        logger.trace("shown")
        #expect(captured.all.map { field("PRIORITY", in: $0) } == ["7"])
    }

    @Test func metadataIsAValue() throws {
        let captured = CapturedEntries()
        let original = captured.logger()
        var copy = original
        copy[metadataKey: "lease.id"] = "L-1"
        original.info("a")
        copy.info("b")
        let entries = captured.all
        try #require(entries.count == 2)
        #expect(!entries[0].contains { $0.hasPrefix("LEASE_ID=") })
        #expect(field("LEASE_ID", in: entries[1]) == "L-1")
    }

    @Test(
        arguments: zip(
            [Logger.Level.trace, .debug, .info, .notice, .warning, .error, .critical],
            [7, 7, 6, 5, 4, 3, 2]
        )
    )
    func syslogPriority(level: Logger.Level, priority: Int) {
        #expect(JournalLogHandler.syslogPriority(for: level) == priority)
    }

    @Test(
        arguments: [
            ("lease.id", "LEASE_ID"),
            ("LEASE_ID", "LEASE_ID"),
            ("host-name", "HOST_NAME"),
            ("gpu.mig/profile", "GPU_MIG_PROFILE"),
            ("rpc.method:v2", "RPC_METHOD_V2"),
            ("slot 3", "SLOT_3"),
            ("grüße", "GR__E"),
            ("_private", "META__PRIVATE"),
            ("3rd.party", "META_3RD_PARTY"),
            (".leading", "META__LEADING"),
            ("message", "META_MESSAGE"),
            ("syslog.identifier", "META_SYSLOG_IDENTIFIER"),
            ("code.line", "META_CODE_LINE"),
            ("message.id", "MESSAGE_ID"),
            ("error.message", "ERROR_MESSAGE"),
        ]
    )
    func metadataKeyMapping(key: String, expected: String) {
        #expect(JournalLogHandler.journalFieldName(forMetadataKey: key) == expected)
    }

    @Test func emptyKeyHasNoField() {
        #expect(JournalLogHandler.journalFieldName(forMetadataKey: "") == nil)
    }

    @Test func longKeysAreCutTo64Characters() throws {
        let name = try #require(JournalLogHandler.journalFieldName(forMetadataKey: String(repeating: "a.", count: 50)))
        #expect(name.count == 64)
        #expect(name == String(String(repeating: "A_", count: 32)))
        let prefixed = try #require(
            JournalLogHandler.journalFieldName(forMetadataKey: String(repeating: "9", count: 70)))
        #expect(prefixed == "META_" + String(repeating: "9", count: 59))
    }
}
