import NIOCore

/// What the child channel initializer hands to the accept loop.
struct AcceptedConnection: Sendable {
    var channel: NIOAsyncChannel<InboundFrame, Never>
    /// A failure here closes the connection in its own task: failing the initializer instead would
    /// surface as an error of the accept stream.
    var peer: Result<PeerCredentials, any Error>
    /// Frames decoded so far and the connection's timers.
    var activity: ConnectionActivity
}
