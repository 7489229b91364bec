/// An adapter error that knows when to try again (a server's `Retry-After`): the outbox waits at
/// least that long, and at least its own backoff.
public protocol RetryAfterHinting: Error {
    var retryAfterSeconds: Int64? { get }
    /// The cloud refused the request itself (e.g. 400 invalid input): retrying cannot help, so the
    /// action fails at once, visibly, instead of after every backoff.
    var isPermanent: Bool { get }
}

extension RetryAfterHinting {
    public var isPermanent: Bool { false }
}
