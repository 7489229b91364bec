import CSystemd
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A swift-log handler that writes each entry to journald as structured fields.
///
/// Text on stderr reaches the journal too, but flattened into MESSAGE; native fields let operators
/// filter exactly (`journalctl -u berthd LEASE_ID=L-42 -p warning`) and keep metadata values with
/// spaces or newlines intact. Each entry carries MESSAGE, PRIORITY (syslog level), SYSLOG_IDENTIFIER,
/// CODE_FILE, CODE_LINE, CODE_FUNC, LOGGER_LABEL, LOGGER_SOURCE, and one field per metadata key:
/// `lease.id` becomes `LEASE_ID` (see ``journalFieldName(forMetadataKey:)``). An attached error adds
/// ERROR_MESSAGE and ERROR_TYPE, matching swift-log's `error.message` and `error.type` keys.
///
/// Pick it when ``JournalDetection/stderrIsJournal()`` is true. When no journald is running at all,
/// libsystemd drops entries silently (sd_journal_sendv reports success); when sending fails
/// otherwise, the entry goes to stderr as a `<priority>`-prefixed line instead of being lost.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info

    /// The logger's label, recorded as LOGGER_LABEL.
    public let label: String
    /// SYSLOG_IDENTIFIER, what `journalctl -t` and the default output show as the program name.
    public let identifier: String

    private let sink: Sink

    /// Where entries go: journald, or a test's capture closure.
    enum Sink: Sendable {
        case journal
        case capture(@Sendable ([String]) -> Void)
    }

    /// Uses `LoggingSystem.metadataProvider`, as swift-log's own handlers do.
    public init(label: String, identifier: String = "berthd") {
        self.init(label: label, identifier: identifier, metadataProvider: LoggingSystem.metadataProvider)
    }

    /// For `LoggingSystem.bootstrap(_:metadataProvider:)`, whose factory receives the provider.
    public init(label: String, identifier: String = "berthd", metadataProvider: Logger.MetadataProvider?) {
        self.init(label: label, identifier: identifier, metadataProvider: metadataProvider, sink: .journal)
    }

    init(label: String, identifier: String, metadataProvider: Logger.MetadataProvider?, sink: Sink) {
        self.label = label
        self.identifier = identifier
        self.metadataProvider = metadataProvider
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let fields = fields(for: event)
        switch sink {
        case .capture(let capture):
            capture(fields)
        case .journal:
            if Self.sendToJournal(fields) < 0 {
                Self.writeToStderr(event: event, metadata: mergedMetadata(for: event))
            }
        }
    }

    /// The entry as `NAME=value` strings, in the order they are sent.
    func fields(for event: LogEvent) -> [String] {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.syslogPriority(for: event.level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
            "LOGGER_LABEL=\(label)",
            "LOGGER_SOURCE=\(event.source)",
        ]
        // Sorted so entries are reproducible; journald does not care about order.
        for (key, value) in mergedMetadata(for: event).sorted(by: { $0.key < $1.key }) {
            guard let name = Self.journalFieldName(forMetadataKey: key) else { continue }
            fields.append("\(name)=\(value)")
        }
        return fields
    }

    /// Handler metadata, then the provider's, then the statement's, later ones winning (swift-log's
    /// documented order), plus the attached error.
    private func mergedMetadata(for event: LogEvent) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided, uniquingKeysWith: { _, new in new })
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit, uniquingKeysWith: { _, new in new })
        }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        return merged
    }

    /// swift-log levels to syslog priorities (journald's PRIORITY); trace has no syslog level below
    /// debug, so it shares 7.
    static func syslogPriority(for level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// Fields this handler writes itself; a metadata key mapping to one of them would add a second
    /// value to it (journald keeps both), so such keys are prefixed instead.
    static let reservedFieldNames: Set<String> = [
        "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
        "LOGGER_LABEL", "LOGGER_SOURCE",
    ]

    /// Maps a swift-log metadata key to a valid journal field name, or nil for an empty key.
    ///
    /// journald accepts only `[A-Z0-9_]`, at most 64 characters, not starting with a digit, and drops
    /// client fields starting with `_` (those are its trusted fields). So ASCII letters are uppercased
    /// and every other character becomes `_` (`lease.id` -> `LEASE_ID`); a name that would not start
    /// with a letter, or that collides with a field the handler writes, gets a `META_` prefix
    /// (`_x` -> `META__X`, `message` -> `META_MESSAGE`); the result is cut to 64 characters.
    static func journalFieldName(forMetadataKey key: String) -> String? {
        guard !key.isEmpty else { return nil }
        var name = String(
            String.UnicodeScalarView(
                key.unicodeScalars.map { scalar -> Unicode.Scalar in
                    switch scalar {
                    case "A"..."Z", "0"..."9", "_": return scalar
                    case "a"..."z": return Unicode.Scalar(UInt8(scalar.value) - 32)
                    default: return "_"
                    }
                }
            )
        )
        if !(name.unicodeScalars.first.map { ("A"..."Z").contains($0) } ?? false)
            || reservedFieldNames.contains(name)
        {
            name = "META_" + name
        }
        return String(name.prefix(64))
    }

    /// Sends the fields with `sd_journal_sendv` (the variadic `sd_journal_send` is not callable from
    /// Swift). Returns its result: 0, or a negative errno.
    static func sendToJournal(_ fields: [String]) -> Int32 {
        // One contiguous buffer keeps every iovec's pointer valid for the duration of the call.
        var buffer: [UInt8] = []
        buffer.reserveCapacity(fields.reduce(0) { $0 + $1.utf8.count })
        var spans: [(offset: Int, length: Int)] = []
        spans.reserveCapacity(fields.count)
        for field in fields {
            spans.append((buffer.count, field.utf8.count))
            buffer.append(contentsOf: field.utf8)
        }
        return buffer.withUnsafeMutableBytes { bytes in
            guard let base = bytes.baseAddress else { return -EINVAL }
            let vectors = spans.map { iovec(iov_base: base + $0.offset, iov_len: $0.length) }
            return sd_journal_sendv(vectors, Int32(vectors.count))
        }
    }

    /// Fallback when journald is unreachable: stderr usually still reaches the journal or a console,
    /// and a `<N>` prefix is how journald's stdout/stderr reader learns the priority.
    static func writeToStderr(event: LogEvent, metadata: Logger.Metadata) {
        var line = "<\(syslogPriority(for: event.level))>\(event.message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(value)"
        }
        line += "\n"
        var bytes = Array(line.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            bytes = bytes.dropFirst(written)
        }
    }
}
