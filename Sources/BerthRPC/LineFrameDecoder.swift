import NIOCore

/// One newline-delimited frame from a client.
enum InboundFrame: Sendable, Equatable {
    /// A line without its "\n" (a trailing "\r" is left in; JSON treats it as whitespace).
    case line([UInt8])
    /// The pending line grew past the limit. Nothing more is decoded on this connection.
    case tooLong
}

/// Splits the byte stream on "\n" with a cap on line length.
///
/// NIOExtras' `LineBasedFrameDecoder` has no cap, and `ByteToMessageHandler(maximumBufferSize:)` only
/// fails the pipeline, which loses the chance to answer. This decoder emits `.tooLong` as soon as a
/// pending line exceeds the limit, then discards everything else it receives, so a client cannot make
/// the server hold more than about `maxLineLength` plus one read's worth of bytes. Blank lines (only
/// spaces, tabs or "\r") are skipped.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = InboundFrame

    let maxLineLength: Int
    /// Told of every frame and of every read that leaves a partial line (for the request timeout).
    let activity: ConnectionActivity?
    /// How many readable bytes have already been searched for "\n", so a long line arriving in many
    /// reads is scanned once, not once per read.
    private var scanned = 0
    private var overflowed = false

    init(maxLineLength: Int, activity: ConnectionActivity? = nil) {
        precondition(maxLineLength > 0, "maxLineLength must be positive")
        self.maxLineLength = maxLineLength
        self.activity = activity
    }

    private func emit(context: ChannelHandlerContext, _ frame: InboundFrame) {
        activity?.frameDecoded()
        context.fireChannelRead(Self.wrapInboundOut(frame))
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if overflowed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let view = buffer.readableBytesView
        if let newline = view[(view.startIndex + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - view.startIndex
            scanned = 0
            if length > maxLineLength {
                overflow(context: context, buffer: &buffer)
                return .needMoreData
            }
            let line = buffer.readBytes(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if !Self.isBlank(line) {
                emit(context: context, .line(line))
            }
            return .continue
        }
        scanned = view.count
        if view.count > maxLineLength {
            overflow(context: context, buffer: &buffer)
        } else {
            activity?.received(partial: !view.isEmpty)
        }
        return .needMoreData
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A last line without its newline, e.g. `printf '{...}' | nc -U -N`: answer it rather than
        // silently dropping it.
        if !overflowed, buffer.readableBytes > 0 {
            let line = buffer.readBytes(length: buffer.readableBytes)!
            scanned = 0
            if !Self.isBlank(line) {
                emit(context: context, .line(line))
            }
        }
        return .needMoreData
    }

    private mutating func overflow(context: ChannelHandlerContext, buffer: inout ByteBuffer) {
        overflowed = true
        scanned = 0
        buffer.moveReaderIndex(to: buffer.writerIndex)
        emit(context: context, .tooLong)
    }

    static func isBlank(_ line: [UInt8]) -> Bool {
        line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }
}
