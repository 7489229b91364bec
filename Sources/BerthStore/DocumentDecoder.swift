import BerthCore
import BerthJSON
import Dispatch
import Foundation
import GRDB
import Synchronization

/// Decodes a table's JSON documents on every core while the reading thread steps the SQLite cursor.
///
/// The reading thread copies bodies back to back into batches (a few hundred KB each) and queues
/// them; worker threads of its own (one per other core) take batches from the queue and parse
/// straight from their bytes. When the queue already holds a batch per core, the reading thread
/// decodes the next one itself, so memory stays a few batches however large the table, and it
/// drains the queue with the workers once the rows are read. Results come back in row order.
///
/// Dedicated threads rather than a dispatch queue: the reading thread waits only for batches a
/// worker has actually taken, never for work that would need a free thread of a shared pool (the
/// caller itself may be one of that pool's threads). Every worker is joined before `decodeAll`
/// returns or throws.
enum DocumentDecoder {
    /// Rows per batch: large enough that handing over a batch costs nothing next to decoding it.
    static let batchRows = 512

    struct Batch: Sendable {
        var bytes: [UInt8] = []
        /// End offset of each body in `bytes`.
        var ends: [Int] = []
        /// Each row's first column (rowid or seq), for the error message of an unreadable one.
        var keys: [Int64] = []
    }

    /// The queue of batches between the reading thread and the workers, and what came out.
    final class Pipeline<T: Sendable>: Sendable {
        struct State {
            var pending: [(index: Int, batch: Batch)] = []
            /// Index in `pending` of the next batch to take (taken ones are dropped in bulk).
            var head = 0
            var closed = false
            var results: [Int: [T]] = [:]
            var failedKey: Int64?
            var waiting: Int { pending.count - head }
        }
        let state = Mutex(State())
        /// One signal per queued batch, and one per worker when the queue closes.
        let available = DispatchSemaphore(value: 0)
        let decode: @Sendable (JSON) -> T?

        init(decode: @escaping @Sendable (JSON) -> T?) { self.decode = decode }

        func put(_ batch: Batch, index: Int) {
            state.withLock { $0.pending.append((index, batch)) }
            available.signal()
        }

        /// The oldest queued batch; nil when none is queued.
        func take() -> (index: Int, batch: Batch)? {
            state.withLock { state in
                guard state.head < state.pending.count else { return nil }
                let next = state.pending[state.head]
                state.pending[state.head].batch = Batch()  // release its bytes now
                state.head += 1
                if state.head == state.pending.count {
                    state.pending.removeAll(keepingCapacity: true)
                    state.head = 0
                }
                return next
            }
        }

        func run(_ work: (index: Int, batch: Batch)) {
            let decoded = DocumentDecoder.decodeBatch(work.batch, decode)
            state.withLock { state in
                if let failed = decoded.failedKey {
                    state.failedKey = min(state.failedKey ?? .max, failed)
                } else {
                    state.results[work.index] = decoded.values
                }
            }
        }

        /// A worker: batches until the queue is closed and empty.
        func work() {
            while true {
                available.wait()
                if let next = take() {
                    run(next)
                } else if state.withLock({ $0.closed && $0.waiting == 0 }) {
                    return
                }
            }
        }

        func close(workers: Int) {
            state.withLock { $0.closed = true }
            for _ in 0..<workers { available.signal() }
        }
    }

    /// Parses and decodes one batch, stopping at the first body that is not a valid document.
    static func decodeBatch<T>(_ batch: Batch, _ decode: (JSON) -> T?) -> (values: [T], failedKey: Int64?) {
        var out: [T] = []
        out.reserveCapacity(batch.ends.count)
        var failed: Int64?
        batch.bytes.withUnsafeBufferPointer { bytes in
            var start = 0
            for (k, end) in batch.ends.enumerated() {
                let body = UnsafeBufferPointer(rebasing: bytes[start..<end])
                start = end
                guard let json = try? JSONParser.parse(body), let v = decode(json) else {
                    failed = batch.keys[k]
                    return
                }
                out.append(v)
            }
        }
        return (out, failed)
    }

    /// Puts `items` in (creation time, id) order, the order of listings and of the calendar's inserts.
    /// Sorts small keys, then the items in place by swapping (they are large structs: swaps move them,
    /// where building a new array would copy every one).
    static func sortByCreation<T>(_ items: inout [T], _ key: (T) -> (Timestamp, String)) {
        var keyed = items.indices.map { k in (key(items[k]), k) }
        if zip(keyed, keyed.dropFirst()).allSatisfy({ !($1.0 < $0.0) }) { return }
        keyed.sort { a, b in a.0 < b.0 }
        // Position i takes the item now at `from[i]`; follow each cycle of that permutation, swapping.
        var from = keyed.map(\.1)
        for start in from.indices where from[start] != start {
            var i = start
            while from[i] != start {
                let j = from[i]
                items.swapAt(i, j)
                from[i] = i
                i = j
            }
            from[i] = i
        }
    }

    /// `sql` must select an integer key and then the body. `decode` turns a parsed body into a value
    /// (nil when the document is not one); `unreadable` names a failed row for the error.
    static func decodeAll<T: Sendable>(
        _ db: Database, sql: String, _ decode: @escaping @Sendable (JSON) -> T?,
        unreadable: (Int64) throws -> String
    ) throws -> [T] {
        let pipeline = Pipeline<T>(decode: decode)
        let workers = Parallel.cores - 1
        let finished = DispatchSemaphore(value: 0)
        for _ in 0..<workers {
            Thread {
                pipeline.work()
                finished.signal()
            }.start()
        }
        var batches = 0
        var batch = Batch()

        func submit() {
            let index = batches
            batches += 1
            // Enough queued for every core: decode this one here instead of queueing more.
            if pipeline.state.withLock({ $0.waiting }) >= Parallel.cores {
                pipeline.run((index, batch))
            } else {
                pipeline.put(batch, index: index)
            }
            batch = Batch()
        }

        do {
            defer {
                // Also when reading throws: drain what is queued, then join every worker.
                pipeline.close(workers: workers)
                while let next = pipeline.take() { pipeline.run(next) }
                for _ in 0..<workers { finished.wait() }
            }
            let rows = try Row.fetchCursor(db, sql: sql)
            while let row = try rows.next() {
                let key: Int64 = row[0]
                let isText = try row.withUnsafeData(atIndex: 1) { data -> Bool in
                    guard let data else { return false }
                    data.withUnsafeBytes { batch.bytes.append(contentsOf: $0) }
                    return true
                }
                guard isText else { throw BerthError(.internalError, try unreadable(key)) }
                batch.ends.append(batch.bytes.count)
                batch.keys.append(key)
                if batch.ends.count == batchRows { submit() }
            }
            if !batch.ends.isEmpty { submit() }
        }
        let state = pipeline.state.withLock { state in
            let s = state
            state = Pipeline<T>.State()
            return s
        }
        if let key = state.failedKey { throw BerthError(.internalError, try unreadable(key)) }
        // Concatenated by moving: popLast takes each value out of its (uniquely held) batch array,
        // so nothing is copied and released again; filled from the back.
        var results = state.results
        let total = results.values.reduce(0) { $0 + $1.count }
        return [T](unsafeUninitializedCapacity: total) { buffer, initialized in
            var k = total
            for b in (0..<batches).reversed() {
                guard var values = results.removeValue(forKey: b) else { continue }
                while let v = values.popLast() {
                    k -= 1
                    (buffer.baseAddress! + k).initialize(to: v)
                }
            }
            precondition(k == 0, "decoded batches went missing")
            initialized = total
        }
    }
}
