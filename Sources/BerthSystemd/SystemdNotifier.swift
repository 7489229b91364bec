import CSystemd

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Tells the service manager about the daemon's state through `sd_notify(3)`.
///
/// The unit is `Type=notify`: systemd considers berthd started only after `READY=1`, which must be
/// sent once the store is open and the socket bound, so clients never see a started unit that
/// refuses connections. With `WatchdogSec=` set, systemd kills and restarts a daemon that stops
/// sending `WATCHDOG=1`, which catches a wedged scheduler loop that a crash-only restart would miss.
///
/// The notifier holds no state: `sd_notify` reads `NOTIFY_SOCKET` on every call and does nothing
/// when it is unset, so the same code runs unchanged under systemd, in a terminal and in tests.
/// `NOTIFY_SOCKET` is never unset, because watchdog pings and reload notifications need it for the
/// daemon's whole life; `NotifyAccess=main` makes systemd ignore it in any child that inherits it.
public struct SystemdNotifier: Sendable {
    public init() {}

    /// Whether a service manager listens (`NOTIFY_SOCKET` is set); when false, every call is a no-op.
    public var isEnabled: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Startup (or a reload) is finished; the optional status goes in the same datagram so
    /// `systemctl status` never shows a stale "starting" text next to an active unit.
    public func ready(status: String? = nil) {
        send(Self.state("READY=1", status: status))
    }

    /// Free-form one-line text shown by `systemctl status` (e.g. "serving, 12 hosts, 3 active leases").
    public func status(_ text: String) {
        send("STATUS=" + Self.singleLine(text))
    }

    /// Keep-alive for `WatchdogSec=`; send it at `watchdogPingInterval()` from the loop whose
    /// liveness matters (the scheduler), not from an independent timer that would outlive a hang.
    public func watchdogPing() {
        send("WATCHDOG=1")
    }

    /// Graceful shutdown has begun, so systemd shows "deactivating" rather than a hung service
    /// while in-flight requests drain.
    public func stopping(status: String? = nil) {
        send(Self.state("STOPPING=1", status: status))
    }

    /// A configuration reload (SIGHUP) has begun; send `ready()` when it is done.
    ///
    /// systemd 253+ requires `MONOTONIC_USEC` (CLOCK_MONOTONIC at the moment of the reload) to
    /// match the notification with the reload request it answers; 252 ignores the extra field.
    public func reloading() {
        send("RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())")
    }

    /// Sends raw newline-separated assignments, e.g. `"READY=1\nSTATUS=x"`, in one datagram.
    ///
    /// - Returns: whether a datagram was sent; false when `NOTIFY_SOCKET` is unset or sending
    ///   failed. Notification is best effort, so callers may ignore it (or log it once).
    @discardableResult
    public func send(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// How often to call `watchdogPing()`: half of `WATCHDOG_USEC`, as systemd recommends, when
    /// `sd_watchdog_enabled` says the watchdog is on for this process (`WATCHDOG_PID` absent or equal
    /// to our pid); nil otherwise. The environment is left in place so the answer stays stable.
    public func watchdogPingInterval() -> Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(usec / 2)
    }

    /// A newline inside STATUS would start a new assignment (for example a forged `READY=1`).
    static func singleLine(_ text: String) -> String {
        guard text.contains(where: \.isNewline) else { return text }
        return String(text.map { $0.isNewline ? " " : $0 })
    }

    static func state(_ base: String, status: String?) -> String {
        guard let status else { return base }
        return base + "\nSTATUS=" + singleLine(status)
    }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }
}
