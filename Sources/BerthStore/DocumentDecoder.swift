import BerthCore
import BerthJSON
import Dispatch
import Foundation
import GRDB
import Synchronization

/// Decodes a table's JSON documents on every core while the reading thread steps the SQLite cursor.
///
/// The reading thread copies bodies back to back into batches (a few hundred KB each) and hands each
/// batch to a worker on a concurrent queue; a semaphore bounds the batches in flight, so memory stays
/// a few batches however large the table. Workers parse straight from the batch's bytes. Results come
/// back in row order. `decodeAll` waits for every batch it started before it returns or throws.
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

    /// Batches' results by batch number, and the smallest key of a body that did not decode.
    final class Sink<T: Sendable>: Sendable {
        struct State {
            var results: [Int: [T]] = [:]
            var failedKey: Int64?
        }
        let state = Mutex(State())

        func store(_ decoded: (values: [T], failedKey: Int64?), index: Int) {
            state.withLock { state in
                if let failed = decoded.failedKey {
                    state.failedKey = min(state.failedKey ?? .max, failed)
                } else {
                    state.results[index] = decoded.values
                }
            }
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

    /// `items` in (creation time, id) order, the order of listings and of the calendar's inserts.
    /// Sorts small keys and then moves each item once (the items are large structs).
    static func sortedByCreation<T>(_ items: [T], _ key: (T) -> (Timestamp, String)) -> [T] {
        var keyed = items.indices.map { k in (key(items[k]), k) }
        if zip(keyed, keyed.dropFirst()).allSatisfy({ !($1.0 < $0.0) }) { return items }
        keyed.sort { a, b in a.0 < b.0 }
        return keyed.map { items[$0.1] }
    }

    /// `sql` must select an integer key and then the body. `decode` turns a parsed body into a value
    /// (nil when the document is not one); `unreadable` names a failed row for the error.
    static func decodeAll<T: Sendable>(
        _ db: Database, sql: String, _ decode: @escaping @Sendable (JSON) -> T?,
        unreadable: (Int64) throws -> String
    ) throws -> [T] {
        let sink = Sink<T>()
        let queue = DispatchQueue(label: "berth.store.decode", attributes: .concurrent)
        let group = DispatchGroup()
        // Batches in the workers' hands (running or queued): one per core.
        let slots = DispatchSemaphore(value: Parallel.cores)
        var batches = 0
        var batch = Batch()

        // Caller runs: a batch goes to a worker while one is free (or about to be: one waiting batch
        // per core), otherwise this thread decodes it itself. Dispatch may give us fewer threads than
        // cores (this thread is one of its pool), and then this thread is the other worker.
        func submit() {
            let work = batch
            let index = batches
            batches += 1
            batch = Batch()
            guard slots.wait(timeout: .now()) == .success else {
                sink.store(decodeBatch(work, decode), index: index)
                return
            }
            group.enter()
            queue.async {
                sink.store(decodeBatch(work, decode), index: index)
                slots.signal()
                group.leave()
            }
        }

        do {
            defer { group.wait() }  // also when reading throws: no batch outlives this call
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
        let state = sink.state.withLock { state in
            let s = state
            state = Sink<T>.State()
            return s
        }
        if let key = state.failedKey { throw BerthError(.internalError, try unreadable(key)) }
        var all: [T] = []
        all.reserveCapacity(state.results.values.reduce(0) { $0 + $1.count })
        for k in 0..<batches { all.append(contentsOf: state.results[k] ?? []) }
        return all
    }
}
