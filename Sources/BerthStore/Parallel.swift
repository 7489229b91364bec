import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Independent pieces of CPU-bound work spread over the machine's cores, for the few places where
/// one thread would otherwise do everything (a restart decoding and indexing its whole state).
///
/// Every function here returns only when all of its work is done: nothing outlives the call, so
/// callers keep plain sequential reasoning about what they own afterwards.
public enum Parallel {
    /// CPUs online (at least 1).
    public static let cores: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Runs `first` and `second` at the same time (on two cores when there are two) and returns both
    /// results. With one core they simply run one after the other.
    public static func both<A: Sendable, B: Sendable>(_ first: @Sendable () -> A, _ second: @Sendable () -> B) -> (A, B)
    {
        let a = Mutex<A?>(nil)
        let b = Mutex<B?>(nil)
        DispatchQueue.concurrentPerform(iterations: 2) { k in
            if k == 0 {
                let v = first()
                a.withLock { $0 = v }
            } else {
                let v = second()
                b.withLock { $0 = v }
            }
        }
        // concurrentPerform returns after both iterations ran, so both are set.
        return (a.withLock { $0! }, b.withLock { $0! })
    }
}
