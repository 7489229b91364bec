import NIOCore
import Synchronization

/// The server's view of a live connection, for shutdown.
final class ConnectionHandle: Sendable {
    let id: RPCConnectionID
    let channel: any Channel
    private let draining = Atomic<Bool>(false)

    init(id: RPCConnectionID, channel: any Channel) {
        self.id = id
        self.channel = channel
    }

    var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Stops reading: shutting down the input side ends the inbound stream once the lines already
    /// decoded are consumed, while the output side stays open for the remaining replies.
    func beginDraining() {
        guard !draining.exchange(true, ordering: .acquiringAndReleasing) else { return }
        channel.close(mode: .input, promise: nil)
    }

    func forceClose() {
        _ = draining.exchange(true, ordering: .acquiringAndReleasing)
        channel.close(promise: nil)
    }
}
