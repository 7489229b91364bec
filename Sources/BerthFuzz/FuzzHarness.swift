import BerthCore
import BerthJSON
import Dispatch
import Synchronization

/// Drives `FuzzWorld` from a synchronous caller (libFuzzer's `LLVMFuzzerTestOneInput`): one input
/// is one request line, its reply is checked by `ReplyOracle`, and the world is rebuilt every
/// `inputsPerWorld` inputs so the state (leases, events, the clock) stays small and runs stay fast.
///
/// Blocking on a semaphore until the async dispatcher is done is acceptable here only: the caller
/// is libFuzzer's thread, never one of the concurrency pool's.
public final class FuzzHarness {
    public let inputsPerWorld: Int
    private var world: FuzzWorld?
    private var inputs = 0
    private var connection: UInt64 = 0

    public init(inputsPerWorld: Int = 2000) {
        precondition(inputsPerWorld > 0)
        self.inputsPerWorld = inputsPerWorld
    }

    /// Runs one input; returns what is wrong with its reply, or nil when the reply is valid.
    public func run(_ input: [UInt8]) -> String? {
        let world = currentWorld()
        inputs += 1
        connection += 1
        let (problem, reply) = FuzzHarness.blocking { [connection] in
            await world.checkAndReply(input, connection: connection)
        }
        if tallying { tally(reply) }
        return problem
    }

    /// Counts outcomes (`result`, each error code, `none`) when `tallying` is on, so a run can show
    /// how far inputs got: parse errors only, or into the methods.
    public var tallying = false
    public private(set) var outcomes: [String: Int] = [:]

    private func tally(_ reply: [UInt8]?) {
        guard let reply, let json = try? JSONParser.parse(reply, maxDepth: 1024) else {
            outcomes["none", default: 0] += 1
            return
        }
        for r in json.arrayValue ?? [json] {
            let key = r["result"] != nil ? "result" : (r["error"]?["code"]?.intValue).map { String($0) } ?? "?"
            outcomes[key, default: 0] += 1
        }
    }

    private func currentWorld() -> FuzzWorld {
        if let world, inputs % inputsPerWorld != 0 { return world }
        world?.remove()
        let made = FuzzHarness.blocking { () async -> Result<FuzzWorld, BerthError> in
            do throws(BerthError) { return .success(try await FuzzWorld()) } catch { return .failure(error) }
        }
        switch made {
        case .success(let w): world = w
        case .failure(let e): fatalError("berth-fuzz: cannot build the world: \(e)")
        }
        return world!
    }

    /// The result of `body`, waited for on this (non-pool) thread.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let slot = Slot<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            let result = await body()
            slot.value.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return slot.value.withLock { $0! }
    }

    private final class Slot<T: Sendable>: Sendable {
        let value = Mutex<T?>(nil)
    }
}
