import AllegroPosix
import AllegroSpill
import Atomics
import Foundation
import Synchronization

/// Decompressed records from the spill for one catching-up collector, read by the relay's
/// `ReplayPool` (decompression never runs on the I/O thread) and handed over in chunks: one
/// block's records each, in DELIVER layout. At most `depth` chunks are in flight; the I/O thread
/// returns each after copying it out, so memory is bounded per replay.
///
/// Thread rules: the I/O thread calls `take`, `recycle`, `cancel` and the queries; pool threads
/// call `readOne`, never two at once for one feed (`scheduled` says a feed is queued or being
/// read, so it is queued at most once), which makes the reader single-threaded.
final class ReplayFeed: @unchecked Sendable {
    /// One block's records. Owned by exactly one thread at a time: the pool thread while it
    /// fills it, then the I/O thread (through the feed's mutex) until it gives it back.
    final class Chunk: @unchecked Sendable {
        private(set) var storage: UnsafeMutableRawBufferPointer
        var count = 0

        init() { storage = .allocate(byteCount: 128 * 1024, alignment: 16) }
        deinit { storage.deallocate() }

        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[..<count]) }

        func fill(_ source: UnsafeRawBufferPointer) {
            if storage.count < source.count {
                storage.deallocate()
                storage = .allocate(byteCount: source.count, alignment: 16)
            }
            if let from = source.baseAddress, let to = storage.baseAddress { to.copyMemory(from: from, byteCount: source.count) }
            count = source.count
        }
    }

    private struct State {
        var ready: [Chunk] = []
        var spare: [Chunk] = []
        /// Chunks being filled or waiting in `ready` or held by the I/O thread.
        var inFlight = 0
        var finished = false
        var cancelled = false
        /// Queued on the pool or being read by one of its threads.
        var scheduled = false
        var readThrough: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Touched only by the pool thread that holds the feed (`scheduled`).
    private let reader: SpillReader
    private let readableThrough: ManagedAtomic<UInt64>
    private let wake: WakeSignal
    private let metrics: RelayMetrics
    private let pool: ReplayPool
    private let depth: Int

    /// Queues a replay from `sequence`, up to `readableThrough` as the spill publishes it.
    init(pool: ReplayPool, catalog: SegmentCatalog, from sequence: UInt64, readableThrough: ManagedAtomic<UInt64>,
         wake: WakeSignal, metrics: RelayMetrics, depth: Int = 8) {
        reader = SpillReader(catalog: catalog, from: sequence)
        self.readableThrough = readableThrough
        self.wake = wake
        self.metrics = metrics
        self.pool = pool
        self.depth = depth
        state.withLock { $0.scheduled = true }
        pool.enqueue(self)
    }

    /// On a pool thread: reads one block into a chunk. Queues the feed again while it has room.
    func readOne() {
        let chunk: Chunk? = state.withLock { state in
            guard !state.cancelled else {
                state.scheduled = false
                state.finished = true
                return nil
            }
            state.inFlight += 1
            return state.spare.popLast() ?? Chunk()
        }
        guard let chunk else { return wake.signal() }
        let limit = readableThrough.load(ordering: .acquiring)
        let more = reader.nextBlock(limit: limit) { records, count in
            chunk.fill(records)
            metrics.replayRecords.increment(by: count)
            metrics.replayBytes.increment(by: records.count)
        }
        let again: Bool = state.withLock { state in
            if more {
                state.ready.append(chunk)
            } else {
                state.spare.append(chunk)
                state.inFlight -= 1
                state.readThrough = limit
                state.finished = true
            }
            state.scheduled = more && !state.cancelled && state.inFlight < depth
            return state.scheduled
        }
        wake.signal()
        if again { pool.enqueue(self) }
    }

    /// The next chunk, or nil when none is ready yet (or the feed is done).
    func take() -> Chunk? {
        state.withLock { state in state.ready.isEmpty ? nil : state.ready.removeFirst() }
    }

    /// Gives a chunk back once its records are copied out; a feed waiting for room is queued again.
    func recycle(_ chunk: Chunk) {
        let resume: Bool = state.withLock { state in
            state.spare.append(chunk)
            state.inFlight -= 1
            let resume = !state.scheduled && !state.finished && !state.cancelled && state.inFlight < depth
            if resume { state.scheduled = true }
            return resume
        }
        if resume { pool.enqueue(self) }
    }

    /// True once the reader reached the end of what was spilled and every chunk was taken.
    var isDrained: Bool { state.withLock { $0.finished && $0.ready.isEmpty } }

    /// Once drained: the reader had read every spilled record from its start up to this sequence.
    var readThrough: UInt64 { state.withLock { $0.readThrough } }

    /// Stops reading (a collector went away); a pool thread holding it lets it go.
    func cancel() { state.withLock { $0.cancelled = true } }
}

/// The threads that read the spill for catching-up collectors: a fixed number (`replay_threads`),
/// whatever the number of collectors, taking feeds from one queue in turn (one block each, then
/// the feed goes to the back), so a collector far behind does not starve the others and the
/// relay's thread count is bounded.
final class ReplayPool: Sendable {
    private let queue = Mutex<[ReplayFeed]>([])
    private let ready = DispatchSemaphore(value: 0)
    private let stopped = ManagedAtomic<Bool>(false)
    let threads: Int

    init(threads: Int) {
        self.threads = max(1, threads)
        for index in 0 ..< self.threads {
            let thread = Thread { [self] in
                while true {
                    ready.wait()
                    if stopped.load(ordering: .acquiring) { return }
                    let feed = queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                    feed?.readOne()
                }
            }
            thread.name = "allegro-replay-\(index)"
            thread.start()
        }
    }

    /// Queues `feed` for one block's read. A feed is queued at most once at a time (its caller
    /// set `scheduled`).
    fileprivate func enqueue(_ feed: ReplayFeed) {
        queue.withLock { $0.append(feed) }
        ready.signal()
    }

    /// Lets every thread end (the relay is stopping).
    func stop() {
        stopped.store(true, ordering: .releasing)
        for _ in 0 ..< threads { ready.signal() }
    }
}
