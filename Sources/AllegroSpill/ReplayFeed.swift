import AllegroPosix
import Atomics
import Foundation
import Synchronization

/// Records from the spill for one catching-up collector, handed over a chunk at a time (one
/// block's records each, in DELIVER layout). `ReplayFeed` is the spill's; the relay core sees
/// only this, so tests can feed it chunks by hand.
///
/// Thread rules: every call comes from the I/O thread.
public protocol ReplayStream: AnyObject {
    /// The next chunk, or nil when none is ready yet (or the stream is done).
    func take() -> ReplayChunk?
    /// Gives a chunk back once its records are copied out.
    func recycle(_ chunk: ReplayChunk)
    /// True once everything spilled from the start was read and every chunk taken.
    var isDrained: Bool { get }
    /// Once drained: every spilled record from the start up to this sequence was read.
    var readThrough: UInt64 { get }
    /// Stops reading (the collector went away).
    func cancel()
}

/// Where a catching-up collector's records come from: the spill, read from `sequence` on; a
/// `live` subscription may read blocks written but not yet fsync'd, any other only fsync'd ones.
public protocol ReplaySource: AnyObject {
    func replay(from sequence: UInt64, live: Bool) -> any ReplayStream
}

/// The spill's replays: feeds read by a `ReplayPool`, up to what the pipeline has published.
public final class SpillReplays: ReplaySource {
    public let pool: ReplayPool
    /// Signalled by pool threads when a feed has records (or finished); the event loop waits on it.
    public let wake: WakeSignal
    private let pipeline: SpillPipeline

    public init(pipeline: SpillPipeline, threads: Int) throws {
        self.pipeline = pipeline
        wake = try WakeSignal()
        pool = ReplayPool(threads: threads)
    }

    public func replay(from sequence: UInt64, live: Bool) -> any ReplayStream {
        ReplayFeed(pool: pool, catalog: pipeline.catalog, from: sequence,
                   readableThrough: live ? pipeline.writtenThrough : pipeline.durableThrough,
                   wake: wake, metrics: pipeline.metrics)
    }
}

/// Decompressed records from the spill for one catching-up collector, read by the relay's
/// `ReplayPool` (decompression never runs on the I/O thread) and handed over in chunks: one
/// block's records each, in DELIVER layout. At most `depth` chunks are in flight; the I/O thread
/// returns each after copying it out, so memory is bounded per replay.
///
/// Thread rules: the I/O thread calls `take`, `recycle`, `cancel` and the queries; pool threads
/// call `readOne`, never two at once for one feed (`scheduled` says a feed is queued or being
/// read, so it is queued at most once), which makes the reader single-threaded.
final class ReplayFeed: ReplayStream, @unchecked Sendable {
    private struct State {
        var ready: [ReplayChunk] = []
        var spare: [ReplayChunk] = []
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
    private let metrics: SpillMetrics
    private let pool: ReplayPool
    private let depth: Int

    /// Queues a replay from `sequence`, up to `readableThrough` as the spill publishes it.
    init(pool: ReplayPool, catalog: SegmentCatalog, from sequence: UInt64, readableThrough: ManagedAtomic<UInt64>,
         wake: WakeSignal, metrics: SpillMetrics, depth: Int = 8) {
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
        let chunk: ReplayChunk? = state.withLock { state in
            guard !state.cancelled else {
                state.scheduled = false
                state.finished = true
                return nil
            }
            state.inFlight += 1
            return state.spare.popLast() ?? ReplayChunk()
        }
        guard let chunk else { return wake.signal() }
        let limit = readableThrough.load(ordering: .acquiring)
        let more = reader.nextBlock(limit: limit) { records, count in
            chunk.fill(records)
            metrics.replayedRecords.increment(by: count)
            metrics.replayedBytes.increment(by: records.count)
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
    func take() -> ReplayChunk? {
        state.withLock { state in state.ready.isEmpty ? nil : state.ready.removeFirst() }
    }

    /// Gives a chunk back once its records are copied out; a feed waiting for room is queued again.
    func recycle(_ chunk: ReplayChunk) {
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

/// One block's records. Owned by exactly one thread at a time: the pool thread while it
/// fills it, then the I/O thread (through the feed's mutex) until it gives it back.
public final class ReplayChunk: @unchecked Sendable {
    private(set) var storage: UnsafeMutableRawBufferPointer
    public private(set) var count = 0

    public init() { storage = .allocate(byteCount: 128 * 1024, alignment: 16) }
    deinit { storage.deallocate() }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[..<count]) }

    public func fill(_ source: UnsafeRawBufferPointer) {
        if storage.count < source.count {
            storage.deallocate()
            storage = .allocate(byteCount: source.count, alignment: 16)
        }
        if let from = source.baseAddress, let to = storage.baseAddress { to.copyMemory(from: from, byteCount: source.count) }
        count = source.count
    }
}
