#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Fresh directories for a test's state, database and sockets, so tests running in parallel never
/// share files.
public enum TemporaryDirectory {
    /// A new empty directory `/tmp/<prefix>-XXXXXX`. /tmp rather than $TMPDIR: a socket made inside
    /// it must still fit `sun_path` (107 bytes).
    public static func make(prefix: String = "berth-test") throws(SystemCallError) -> String {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else { throw SystemCallError(call: "mkdtemp", code: errno) }
        return String(cString: made)
    }
}

/// `TemporaryDirectory.make(prefix:)` for tests that cannot go on without one.
public func temporaryDirectory(prefix: String = "berth-test") -> String {
    do {
        return try TemporaryDirectory.make(prefix: prefix)
    } catch {
        fatalError("\(error)")
    }
}
