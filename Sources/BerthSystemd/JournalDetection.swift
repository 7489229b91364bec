#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Decides whether logs should go to journald as structured entries or to stderr as text.
public enum JournalDetection {
    /// True when stderr is the journal stream systemd connected, i.e. `JOURNAL_STREAM` ("dev:ino")
    /// names the same file as `fstat(2)`.
    ///
    /// Comparing the inode, not merely checking that the variable exists, matters because the
    /// variable is inherited: a shell or `berthctl` started from a journald-logged service, or a
    /// daemon whose stderr was redirected to a file, has `JOURNAL_STREAM` but not the stream.
    public static func stderrIsJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM") else { return false }
        return fileDescriptor(STDERR_FILENO, matchesJournalStream: String(cString: value))
    }

    /// Whether `fd` is the file described by a `JOURNAL_STREAM` value (two decimal numbers).
    static func fileDescriptor(_ fd: Int32, matchesJournalStream value: String) -> Bool {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else {
            return false
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}
