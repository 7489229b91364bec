import Testing

@testable import BerthSystemd

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The dev:ino comparison on files of the test's own; the env-reading entry point is tested in
/// `EnvironmentDependentTests`.
@Suite("JOURNAL_STREAM matching")
struct JournalDetectionTests {
    /// Runs `body` with an open descriptor of a fresh temporary file and its `fstat` result.
    func withTemporaryFile(_ body: (Int32, stat) throws -> Void) throws {
        var template = Array("/tmp/berth-journal-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        try #require(fd >= 0)
        defer {
            close(fd)
            template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        }
        var info = stat()
        try #require(fstat(fd, &info) == 0)
        try body(fd, info)
    }

    @Test func sameDeviceAndInodeMatches() throws {
        try withTemporaryFile { fd, info in
            #expect(JournalDetection.fileDescriptor(fd, matchesJournalStream: "\(info.st_dev):\(info.st_ino)"))
        }
    }

    @Test func otherInodeOrDeviceDoesNotMatch() throws {
        try withTemporaryFile { fd, info in
            #expect(!JournalDetection.fileDescriptor(fd, matchesJournalStream: "\(info.st_dev):\(info.st_ino + 1)"))
            #expect(!JournalDetection.fileDescriptor(fd, matchesJournalStream: "\(info.st_dev + 1):\(info.st_ino)"))
        }
    }

    @Test(arguments: ["", ":", "12", "12:", ":34", "a:b", "12:34:56", " 12:34", "-1:34"])
    func malformedValuesDoNotMatch(_ value: String) throws {
        try withTemporaryFile { fd, _ in
            #expect(!JournalDetection.fileDescriptor(fd, matchesJournalStream: value))
        }
    }

    // A daemon started with stderr closed must not crash or claim the journal.
    @Test func invalidDescriptorDoesNotMatch() throws {
        try withTemporaryFile { fd, info in
            let stream = "\(info.st_dev):\(info.st_ino)"
            #expect(JournalDetection.fileDescriptor(fd, matchesJournalStream: stream))
            #expect(!JournalDetection.fileDescriptor(-1, matchesJournalStream: stream))
        }
    }
}

@Suite("Notify state formatting")
struct NotifyStateTests {
    @Test func statusIsKeptOnOneLine() {
        #expect(SystemdNotifier.singleLine("plain") == "plain")
        #expect(SystemdNotifier.singleLine("a\nb\r\nc") == "a b c")
    }

    @Test func stateWithAndWithoutStatus() {
        #expect(SystemdNotifier.state("READY=1", status: nil) == "READY=1")
        #expect(SystemdNotifier.state("STOPPING=1", status: "bye\n") == "STOPPING=1\nSTATUS=bye ")
    }
}
