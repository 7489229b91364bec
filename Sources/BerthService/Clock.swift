import BerthCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where the daemon reads the time. `manual` stands still until moved (tests, simulations).
public final class BerthClock: Sendable {
    public enum Mode: String, Sendable, CaseIterable { case system, manual }

    public let mode: Mode
    private let manualNow: Mutex<Timestamp>

    public init(mode: Mode, initial: Timestamp? = nil) {
        self.mode = mode
        self.manualNow = Mutex(initial ?? BerthClock.systemNow())
    }

    public func now() -> Timestamp {
        switch mode {
        case .system: return BerthClock.systemNow()
        case .manual: return manualNow.withLock { $0 }
        }
    }

    /// Moves a manual clock; a no-op for the system clock.
    public func set(_ t: Timestamp) {
        guard mode == .manual else { return }
        manualNow.withLock { $0 = t }
    }

    public static func systemNow() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(seconds: Int64(ts.tv_sec))
    }

    /// Milliseconds until the system clock reaches `t` (0 if past).
    public static func millisecondsUntil(_ t: Timestamp) -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let nowMs = Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
        return max(0, t.seconds * 1000 - nowMs)
    }
}
