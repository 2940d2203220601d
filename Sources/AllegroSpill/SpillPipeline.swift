import AllegroLog
import AllegroPosix
import AllegroRing
import Atomics
import Foundation
import Synchronization

/// How the spill writes, syncs and keeps: the relay's `spill_*` and `retention_*` settings.
public struct SpillSettings: Sendable {
    public var directory: String
    public var segmentBytes: Int
    public var blockBytes: Int
    /// Least time between the starts of two fsyncs (0: as soon as the disk is free); see
    /// `SpillLoop.run`.
    public var fsyncIntervalMicros: Int
    public var compressionLevel: Int
    /// The codec of new blocks (readers read every codec).
    public var codec: SpillCodec
    public var retentionMaxAgeMillis: Int
    /// 0: no size limit.
    public var retentionMaxBytes: Int
    /// Zeros written ahead of the newest segment's blocks (0: none); see `SpillWriter`.
    public var preallocateBytes: Int
    /// How many nice steps below the relay's other threads the spill thread runs (0: none).
    public var threadNiceIncrement: Int32

    public init(directory: String, segmentBytes: Int, blockBytes: Int, fsyncIntervalMicros: Int, compressionLevel: Int,
                retentionMaxAgeMillis: Int, retentionMaxBytes: Int, codec: SpillCodec = .deflate, preallocateBytes: Int = 0,
                threadNiceIncrement: Int32 = 0) {
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.blockBytes = blockBytes
        self.fsyncIntervalMicros = fsyncIntervalMicros
        self.compressionLevel = compressionLevel
        self.codec = codec
        self.retentionMaxAgeMillis = retentionMaxAgeMillis
        self.retentionMaxBytes = retentionMaxBytes
        self.preallocateBytes = preallocateBytes
        self.threadNiceIncrement = threadNiceIncrement
    }
}

/// The durability pipeline: the spill thread and what the I/O thread shares with it. The
/// thread reads every record from the ring through its own gate (the record source), writes
/// compressed blocks, fsyncs them in groups, publishes `durableThrough` at each fsync (the
/// relay acknowledges a record only once it is at or below that), and saves producer marks,
/// session counts and committed cursors to its `SpillStateSink` (the state sink) at most every
/// 200 ms, cursors alone within an fsync interval of a commit. Retention runs on it too.
///
/// The ring cannot reclaim a record the spill has not fsync'd (the gate advances only at an
/// fsync), so when the disk stalls or fails the ring fills and the relay stops reading
/// producers: back-pressure, never loss. A failed write is retried every 200 ms and reported
/// until it succeeds.
///
/// Thread rules: `durableThrough`, `writtenThrough` and the counters are atomics any thread may
/// read; cursors and the failure go through one mutex; everything else belongs to the spill
/// thread (`SpillLoop`).
public final class SpillPipeline: Sendable {
    /// Every record at or below this is in the spill and fsync'd.
    public let durableThrough: ManagedAtomic<UInt64>
    /// Every record at or below this is written to a segment file (readable by replays).
    public let writtenThrough: ManagedAtomic<UInt64>
    /// Signalled after each group commit and cursor save; the event loop waits on it.
    public let progress: WakeSignal
    public let catalog: SegmentCatalog
    let metrics: SpillMetrics
    let settings: SpillSettings
    let sink: SpillStateSink
    let log: EventLog
    /// Records retention removed that a durable collector had not committed and could no longer
    /// be given from memory (`countForcedLoss`).
    public let retentionDropped = ManagedAtomic<UInt64>(0)
    /// Records a replay found damaged on disk after start-up (counted once, like recovery's).
    public let damagedOnRead = ManagedAtomic<UInt64>(0)
    /// Segments retention removed.
    public let retentionRemovedSegments = ManagedAtomic<UInt64>(0)
    /// Numbers already accounted for: skipped, counted lost by recovery, or counted as forced
    /// loss. Both threads count through it (rarely: at a segment's removal, at a collector's
    /// gap), so each number is counted once.
    private let accounted: Mutex<SkippedSequences>
    /// Read damage counted but not yet logged and saved (the spill thread does that).
    private let unreportedDamage = Mutex<[(ReadDamage, UInt64)]>([])

    private let wake: WakeSignal
    private let sleeping = ManagedAtomic<Bool>(false)
    private let stopping = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let shared: Mutex<Shared>

    /// What the I/O thread hands to the spill thread, and what the spill thread reports back.
    private struct Shared {
        /// Committed cursors not yet persisted.
        var dirtyCursors: [String: UInt64] = [:]
        /// Cursors as saved in the state database (what COMMITTED may answer).
        var savedCursors: [String: UInt64] = [:]
        /// Every configured durable collector's committed cursor (for retention accounting).
        var committed: [String: UInt64] = [:]
        /// Why the spill cannot write now, if it cannot.
        var failure: String?
    }

    /// A pipeline over a spill that recovery left with `catalog`, everything through
    /// `lastSpilled` in it and fsync'd. `cursors` are the durable collectors' saved cursors;
    /// `accounted` the numbers no count may count again (skips, gaps counted earlier).
    public init(settings: SpillSettings, catalog: SegmentCatalog, lastSpilled: UInt64, durableCollectors: [String],
                cursors: [String: UInt64], accounted: [ClosedRange<UInt64>], sink: SpillStateSink,
                metrics: SpillMetrics, log: EventLog) throws {
        self.settings = settings
        self.metrics = metrics
        self.sink = sink
        self.log = log
        durableThrough = ManagedAtomic(lastSpilled)
        writtenThrough = ManagedAtomic(lastSpilled)
        progress = try WakeSignal()
        wake = try WakeSignal()
        self.catalog = catalog
        var committed: [String: UInt64] = [:]
        for name in durableCollectors { committed[name] = cursors[name] ?? 0 }
        shared = Mutex(Shared(savedCursors: committed, committed: committed))
        self.accounted = Mutex(SkippedSequences(accounted))
        catalog.onReadDamage { [weak self] damage in self?.noteReadDamage(damage) }
    }

    /// Starts the spill thread on `ring` from `gate` (which it owns from now on).
    public func start(ring: RecordRing, gate: RingGate) {
        let loop = SpillLoop(pipeline: self, ring: ring, gate: gate)
        let increment = settings.threadNiceIncrement
        let log = log
        let thread = Thread { [finished] in
            // Compression and fsyncs give way to the I/O thread on a contended CPU, so live
            // delivery's tail is not the spill's (BENCHMARKS.md "The spill thread's priority").
            if increment > 0 {
                do throws(SystemError) {
                    try ThreadPriority.lowerCallingThread(by: increment)
                } catch {
                    log.log(.warning, "spill_priority_unchanged", ["error": "\(error)"])
                }
            }
            // The group-commit interval is a nap whose end is a deadline (records wait on it).
            do throws(SystemError) {
                try TimerSlack.setCallingThread(nanos: SpillLoop.timerSlackNanos)
            } catch {
                log.log(.warning, "spill_timer_slack_unchanged", ["error": "\(error)"])
            }
            loop.run()
            finished.signal()
        }
        thread.name = "allegro-spill"
        thread.start()
    }

    /// Called by the I/O thread after it appended records: wakes the spill thread if it sleeps.
    @inline(__always)
    public func recordsAppended() {
        Atomics.atomicMemoryFence(ordering: AtomicUpdateOrdering.sequentiallyConsistent)
        if sleeping.load(ordering: .relaxed) { wake.signal() }
    }

    /// A durable collector's new committed cursor, persisted within an fsync interval.
    public func committed(_ name: String, through: UInt64) {
        shared.withLock { state in
            state.dirtyCursors[name] = max(state.dirtyCursors[name] ?? 0, through)
            state.committed[name] = max(state.committed[name] ?? 0, through)
        }
        wake.signal()
    }

    /// Why the spill cannot write now (nil: it can).
    public var failure: String? { shared.withLock { $0.failure } }

    /// A durable collector's cursor as saved on disk.
    public func savedCursor(_ name: String) -> UInt64 { shared.withLock { $0.savedCursors[name] ?? 0 } }

    /// Counts the numbers of `range` not accounted for yet as retention's forced loss (counter
    /// and metric) and returns how many there were.
    public func countForcedLoss(_ range: ClosedRange<UInt64>) -> UInt64 {
        let records = account(range)
        if records > 0 {
            retentionDropped.wrappingIncrement(by: records, ordering: .relaxed)
            metrics.retentionDropped.increment(by: records)
        }
        return records
    }

    /// Asks the thread to write and fsync everything in the ring, persist cursors and stop;
    /// waits up to `timeoutSeconds`. False if it did not finish (a stuck disk).
    public func stop(timeoutSeconds: Double) -> Bool {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake.signal()
        return finished.wait(timeout: .now() + timeoutSeconds) == .success
    }

    // MARK: Accounting

    /// On the reading thread, before the records after the damage go anywhere: counts the
    /// numbers no count covers yet, so a collector meeting the gap does not count them again.
    private func noteReadDamage(_ damage: ReadDamage) {
        guard damage.firstSequence <= damage.lastSequence else { return }
        let records = account(damage.firstSequence ... damage.lastSequence)
        guard records > 0 else { return }
        damagedOnRead.wrappingIncrement(by: records, ordering: .relaxed)
        unreportedDamage.withLock { $0.append((damage, records)) }
    }

    /// Marks `range` accounted for and returns how many of its numbers were not yet.
    private func account(_ range: ClosedRange<UInt64>) -> UInt64 {
        accounted.withLock { known in
            let fresh = range.upperBound - range.lowerBound + 1 - known.count(in: range)
            if fresh > 0 { known.insert(range) }
            return fresh
        }
    }

    // MARK: For the spill thread

    func takeUnreportedDamage() -> [(ReadDamage, UInt64)] {
        unreportedDamage.withLock { list in
            defer { list.removeAll() }
            return list
        }
    }

    var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    func takeCursors() -> [String: UInt64] {
        shared.withLock { state in
            defer { state.dirtyCursors.removeAll() }
            return state.dirtyCursors
        }
    }

    var hasDirtyCursors: Bool { shared.withLock { !$0.dirtyCursors.isEmpty } }

    /// Publishes cursors now saved, and wakes the event loop to answer COMMITTED.
    func cursorsSaved(_ cursors: [String: UInt64]) {
        guard !cursors.isEmpty else { return }
        shared.withLock { state in
            for (name, through) in cursors { state.savedCursors[name] = max(state.savedCursors[name] ?? 0, through) }
        }
        progress.signal()
    }

    /// Cursors a failed save took: saved with the next one.
    func cursorsNotSaved(_ cursors: [String: UInt64]) {
        shared.withLock { state in
            for (name, through) in cursors { state.dirtyCursors[name] = max(state.dirtyCursors[name] ?? 0, through) }
        }
    }

    func lowestCommitted() -> UInt64? { shared.withLock { $0.committed.values.min() } }

    /// Sets the failure (nil: recovered) and returns the one before.
    func setFailure(_ message: String?) -> String? {
        shared.withLock { state in
            defer { state.failure = message }
            return state.failure
        }
    }

    /// Sleeps until records may have arrived or `millis` pass. The flag-fence-recheck order
    /// pairs with `recordsAppended()` so a wake-up is never lost.
    func sleep(unlessBeyond next: UInt64, ring: RecordRing, millis: Int32) {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        Atomics.atomicMemoryFence(ordering: AtomicUpdateOrdering.sequentiallyConsistent)
        if ring.head == next && !isStopping { wake.wait(timeoutMillis: millis) }
        sleeping.store(false, ordering: .relaxed)
    }
}
