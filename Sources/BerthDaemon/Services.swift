import BerthCore
import BerthOpenStack
import BerthRPC
import BerthService
import BerthStore
import BerthSystemd
import Logging
import ServiceLifecycle
import UnixSignals

/// Serves the socket until graceful shutdown, then drains in-flight requests.
struct RPCServerService: Service {
    let server: UnixSocketRPCServer
    let methods: BerthMethods
    let notifier: SystemdNotifier
    /// Sent with READY=1 once this service runs: the service group registers its SIGTERM/SIGINT
    /// handlers before it starts any service, so a stop requested right after READY=1 is graceful.
    var readyStatus: String

    func run() async throws {
        notifier.ready(status: readyStatus)
        try await withGracefulShutdownHandler {
            try await server.run()
        } onGracefulShutdown: {
            notifier.stopping(status: "draining connections")
            methods.beginDraining()
            server.beginGracefulShutdown()
        }
    }
}

/// Fires lease lifecycle events on the system clock at their due second (manual clocks are
/// moved by `clock.set`/`clock.advance`, which process events themselves).
struct LifecycleTicker: Service {
    let scheduler: Scheduler
    let wakeup: Wakeup

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await scheduler.processDue()
                var wait: Int64 = 1000
                if let next = await scheduler.nextDue() {
                    wait = min(wait, max(BerthClock.millisecondsUntil(next), 1))
                }
                await wakeup.wait(timeout: .milliseconds(wait))
            }
        }
    }
}

struct OutboxService: Service {
    let delivery: OutboxDelivery

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await delivery.run()
        }
    }
}

/// Pings the systemd watchdog only while the scheduler actor answers, so a wedged daemon is restarted.
struct WatchdogService: Service {
    let scheduler: Scheduler
    let notifier: SystemdNotifier
    let interval: Duration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                _ = await scheduler.now
                notifier.watchdogPing()
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// SIGHUP re-reads the config file: roles and log level take effect without a restart.
///
/// `signals` is made before the service group starts, so SIGHUP is trapped (and buffered) before
/// READY=1 goes out: a reload asked for right after start-up is not lost in the moment before this
/// service runs.
struct ReloadService: Service {
    let signals: UnixSignalsSequence
    let reload: @Sendable () async -> Void

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                await reload()
            }
        }
    }
}

/// Checks the cloud connection at start (so a broken clouds.yaml or password is logged at once,
/// with the adapter `degraded` in `system.health`), then compares Nova's aggregates with the
/// active leases every `reconcile_interval_s` and reports drift (log and `system.health`).
struct CloudReconciler: Service {
    let adapter: OpenStackAdapter
    let scheduler: Scheduler
    let store: BerthStore

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await adapter.check()
            while !Task.isCancelled {
                let interval = adapter.settings.reconcileInterval
                if interval <= 0 {
                    // Reconciliation off: only wait for shutdown.
                    try? await Task.sleep(for: .seconds(3600))
                    continue
                }
                try? await Task.sleep(for: .seconds(interval))
                if Task.isCancelled { break }
                let owed = (try? store.leasesWithUndeliveredActions()) ?? []
                let expected = await scheduler.expectedCloudState().filter { !owed.contains($0.value.leaseID) }
                _ = await adapter.reconcile(expected: expected.mapValues(\.hosts))
                let targets = await scheduler.activeReservationsForUsage().map {
                    OpenStackAdapter.UsageTarget(
                        reservationID: $0.reservationID, projectID: $0.projectID, kind: $0.kind, hosts: $0.hosts)
                }
                await adapter.measureUsage(targets)
            }
        }
    }
}
