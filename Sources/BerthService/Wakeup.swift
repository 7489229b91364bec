import Synchronization

/// A level-triggered wake-up for one waiting loop: `signal()` before `wait` is not lost, and
/// `wait` also returns after a timeout, so a loop can both react at once and re-check periodically.
public final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>? = nil
        var generation = 0
        var cancelledGeneration = -1
    }

    private let state = Mutex(State())

    public init() {}

    public func signal() {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        w?.resume()
    }

    /// Returns on a signal, after `timeout`, or when the task is cancelled.
    public func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForSignal() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForSignal() async {
        let gen = state.withLock { s -> Int in
            s.generation += 1
            return s.generation
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.pending || s.cancelledGeneration == gen {
                        s.pending = false
                        return true
                    }
                    s.waiter = c
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
                s.cancelledGeneration = gen
                let w = s.waiter
                s.waiter = nil
                return w
            }
            w?.resume()
        }
    }
}
