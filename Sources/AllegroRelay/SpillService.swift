import AllegroPosix
import AllegroRing
import AllegroSpill
import AllegroStore
import AllegroWire
import Atomics
import Foundation
import Synchronization

/// The spill thread and what the I/O thread shares with it. The thread reads every record from
/// the ring through its own gate, writes compressed blocks, fsyncs them in groups, persists the
/// producer marks and committed cursors of each group, then publishes `durableThrough`: the
/// relay acknowledges a record only once it is at or below that.
///
/// The ring cannot reclaim a record the spill has not fsync'd, so when the disk stalls or fails
/// the ring fills and the relay stops reading producers: back-pressure, never loss. A failed
/// write is retried every 200 ms and reported until it succeeds.
final class SpillService: Sendable {
    /// Every record at or below this is in the spill and fsync'd.
    let durableThrough: ManagedAtomic<UInt64>
    /// Every record at or below this is written to a segment file (readable by replays).
    let writtenThrough: ManagedAtomic<UInt64>
    /// Signalled after each group commit; the event loop waits on it.
    let progress: WakeSignal
    let catalog: SegmentCatalog
    let metrics: RelayMetrics
    /// Records retention removed that a durable collector had not committed and could no longer
    /// be given from memory (`countForcedLoss`).
    let retentionDropped = ManagedAtomic<UInt64>(0)
    /// Numbers already accounted for: skipped, counted lost by recovery, or counted as forced
    /// loss. Both threads count through it (rarely: at a segment's removal, at a collector's
    /// gap), so each number is counted once.
    private let accounted: Mutex<SkippedSequences>
    /// Records a replay found damaged on disk after start-up (counted once, like recovery's).
    let damagedOnRead = ManagedAtomic<UInt64>(0)
    /// Read damage counted but not yet logged and saved (the spill thread does that).
    private let unreportedDamage = Mutex<[(ReadDamage, UInt64)]>([])
    /// Segments retention removed.
    let retentionRemovedSegments = ManagedAtomic<UInt64>(0)

    private let wake: WakeSignal
    private let sleeping = ManagedAtomic<Bool>(false)
    private let stopping = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let shared: Mutex<Shared>

    /// What the I/O thread hands to the spill thread, and what the spill thread reports back.
    struct Shared {
        /// Committed cursors not yet persisted.
        var dirtyCursors: [String: UInt64] = [:]
        /// Cursors as saved in the state database (what COMMITTED may answer).
        var savedCursors: [String: UInt64] = [:]
        /// Every configured durable collector's committed cursor (for retention accounting).
        var committed: [String: UInt64] = [:]
        /// Why the spill cannot write now, if it cannot.
        var failure: String?
    }

    init(resume: ResumePoint, durableCollectors: [String], metrics: RelayMetrics) throws {
        self.metrics = metrics
        durableThrough = ManagedAtomic(resume.lastSpilled)
        writtenThrough = ManagedAtomic(resume.lastSpilled)
        progress = try WakeSignal()
        wake = try WakeSignal()
        catalog = resume.catalog
        var committed: [String: UInt64] = [:]
        for name in durableCollectors { committed[name] = resume.cursors[name] ?? 0 }
        shared = Mutex(Shared(savedCursors: committed, committed: committed))
        accounted = Mutex(SkippedSequences(resume.skips.ranges + resume.countedGaps))
        catalog.onReadDamage { [weak self] damage in self?.noteReadDamage(damage) }
    }

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

    fileprivate func takeUnreportedDamage() -> [(ReadDamage, UInt64)] {
        unreportedDamage.withLock { list in
            defer { list.removeAll() }
            return list
        }
    }

    /// Counts the numbers of `range` not accounted for yet as retention's forced loss (counter
    /// and metric) and returns how many there were.
    func countForcedLoss(_ range: ClosedRange<UInt64>) -> UInt64 {
        let records = account(range)
        if records > 0 {
            retentionDropped.wrappingIncrement(by: records, ordering: .relaxed)
            metrics.retentionDropped.increment(by: records)
        }
        return records
    }

    /// Starts the spill thread on `ring` (whose gate it owns).
    func start(ring: RecordRing, gate: RingGate, resume: ResumePoint, configuration: RelayConfiguration, log: RelayLog) {
        let worker = SpillWorker(service: self, ring: ring, gate: gate, store: resume.store,
                                 directory: resume.spillDirectory, configuration: configuration, log: log)
        Thread { [finished] in
            worker.run()
            finished.signal()
        }.start()
    }

    /// Called by the I/O thread after it appended records: wakes the spill thread if it sleeps.
    @inline(__always)
    func recordsAppended() {
        Atomics.atomicMemoryFence(ordering: AtomicUpdateOrdering.sequentiallyConsistent)
        if sleeping.load(ordering: .relaxed) { wake.signal() }
    }

    /// A durable collector's new committed cursor, persisted with the next group commit.
    func committed(_ name: String, through: UInt64) {
        shared.withLock { state in
            state.dirtyCursors[name] = max(state.dirtyCursors[name] ?? 0, through)
            state.committed[name] = max(state.committed[name] ?? 0, through)
        }
        wake.signal()
    }

    var failure: String? { shared.withLock { $0.failure } }

    /// A durable collector's cursor as saved on disk.
    func savedCursor(_ name: String) -> UInt64 { shared.withLock { $0.savedCursors[name] ?? 0 } }

    /// Asks the thread to write and fsync everything in the ring, persist cursors and stop;
    /// waits up to `timeoutSeconds`. False if it did not finish (a stuck disk).
    func stop(timeoutSeconds: Double) -> Bool {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake.signal()
        return finished.wait(timeout: .now() + timeoutSeconds) == .success
    }

    // MARK: For the worker

    fileprivate var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }
    fileprivate func takeCursors() -> [String: UInt64] {
        shared.withLock { state in
            defer { state.dirtyCursors.removeAll() }
            return state.dirtyCursors
        }
    }
    fileprivate var hasDirtyCursors: Bool { shared.withLock { !$0.dirtyCursors.isEmpty } }
    /// Publishes cursors now saved, and wakes the event loop to answer COMMITTED.
    fileprivate func cursorsSaved(_ cursors: [String: UInt64]) {
        guard !cursors.isEmpty else { return }
        shared.withLock { state in
            for (name, through) in cursors { state.savedCursors[name] = max(state.savedCursors[name] ?? 0, through) }
        }
        progress.signal()
    }
    fileprivate func lowestCommitted() -> UInt64? { shared.withLock { $0.committed.values.min() } }
    fileprivate func setFailure(_ message: String?) -> String? {
        shared.withLock { state in
            defer { state.failure = message }
            return state.failure
        }
    }

    /// Sleeps until records may have arrived or `millis` pass. The flag-fence-recheck order
    /// pairs with `recordsAppended()` so a wake-up is never lost.
    fileprivate func sleep(unlessBeyond next: UInt64, ring: RecordRing, millis: Int32) {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        Atomics.atomicMemoryFence(ordering: AtomicUpdateOrdering.sequentiallyConsistent)
        if ring.head == next && !isStopping { wake.wait(timeoutMillis: millis) }
        sleeping.store(false, ordering: .relaxed)
    }
}

/// The spill thread's own state and loop. Nothing here is touched by another thread.
private final class SpillWorker: @unchecked Sendable {
    // @unchecked: created on the I/O thread, then used only by the spill thread it is handed to.
    let service: SpillService
    let ring: RecordRing
    let gate: RingGate
    let store: StateStore
    let writer: SpillWriter
    let configuration: RelayConfiguration
    let log: RelayLog
    let blockBytes: Int
    let fsyncIntervalNanos: UInt64

    var next: UInt64
    var lastWritten: UInt64
    var lastSynced: UInt64
    var lastSyncAt = Clock.monotonicNanos
    var lastRetentionAt: UInt64 = 0
    var lastStateSaveAt: UInt64 = 0
    var lastCursorSaveAt: UInt64 = 0
    var lastPruneAt = Clock.monotonicNanos
    var savedCheckpoint: UInt64 = 0
    /// Producer marks seen since the last group commit.
    var marks: [[UInt8]: ProducerMark] = [:]
    var recentMark: ProducerMark?
    var sessions = SessionTally()
    /// Session counts taken from the tally but not yet saved (a failed save retries them).
    var unsavedSessions: [SessionDelta] = []
    /// Ingest time of the oldest record written since the last fsync (0: none).
    var oldestUnsyncedIngest: UInt64 = 0

    init(service: SpillService, ring: RecordRing, gate: RingGate, store: StateStore, directory: String,
         configuration: RelayConfiguration, log: RelayLog) {
        self.service = service
        self.ring = ring
        self.gate = gate
        self.store = store
        self.configuration = configuration
        self.log = log
        writer = SpillWriter(directory: directory, catalog: service.catalog, segmentBytes: configuration.spillSegmentBytes,
                             segmentNanos: UInt64(configuration.retentionMaxAgeMillis) * 1_000_000 / 8,
                             level: Int32(configuration.spillCompressionLevel))
        blockBytes = configuration.spillBlockBytes
        fsyncIntervalNanos = UInt64(configuration.spillFsyncIntervalMillis) * 1_000_000
        next = gate.next
        lastWritten = service.writtenThrough.load(ordering: .relaxed)
        lastSynced = lastWritten
    }

    func run() {
        while true {
            let head = ring.head
            var now = Clock.monotonicNanos
            // Commits are saved within an fsync interval, whatever the spill is doing (even
            // while its disk writes fail): COMMITTED waits for this save.
            if now - lastCursorSaveAt >= fsyncIntervalNanos && service.hasDirtyCursors { saveCursors() }
            if next < head {
                // Group commit, on the leading edge: records that find the last fsync at least an
                // interval old are written and fsync'd at once (a trickle waits only for its own
                // fsync: collectors other than live ones are given records only after it); records
                // arriving sooner gather until the interval since that fsync is up (or a block is
                // full), so the disk sees at most one fsync per interval however fast records come.
                let sinceSync = now - lastSyncAt
                if sinceSync < fsyncIntervalNanos && !service.isStopping && !blockIsDue(head: head) {
                    // A plain nap, not the wake-up flag: records arriving in the window must not
                    // each cost the I/O thread a signal and this thread a context switch.
                    Clock.sleep(nanos: min(fsyncIntervalNanos - sinceSync, 1_000_000))
                    continue
                }
                guard writeBlock(head: head) else {
                    Clock.sleep(nanos: 200_000_000)
                    continue
                }
                now = Clock.monotonicNanos
            }
            if lastWritten > lastSynced && (next == ring.head || now - lastSyncAt >= fsyncIntervalNanos) {
                guard groupCommit() else {
                    Clock.sleep(nanos: 200_000_000)
                    continue
                }
            }
            if now - lastRetentionAt >= 1_000_000_000 {
                lastRetentionAt = now
                applyRetention()
            }
            if now - lastPruneAt >= 3_600_000_000_000 {
                // Producers unseen for the retention age have no records left in the spill.
                lastPruneAt = now
                let cutoff = Clock.wallNanos &- UInt64(configuration.retentionMaxAgeMillis) * 1_000_000
                do { try store.pruneProducers(notSeenSince: cutoff) } catch {
                    log.log(.warning, "state_save_failed", ["error": "\(error)"])
                }
            }
            if now - lastStateSaveAt >= Self.stateSaveNanos {
                saveState()
                reportReadDamage()
            }
            if next == ring.head && lastWritten == lastSynced {
                if service.isStopping {
                    saveState()
                    writer.close()
                    // Everything assigned is spilled: the next run continues with no gap.
                    do {
                        try store.reserve(through: next - 1)
                        // After a clean stop, state.sqlite alone is the whole state (a copy of
                        // it is a backup; damage to it is what start-up checks).
                        try store.checkpointLog()
                    } catch {
                        log.log(.warning, "state_save_failed", ["error": "\(error)"])
                    }
                    return
                }
                // A commit that came too soon after the last cursor save is saved when the
                // interval is up, not after a full nap.
                let dueAt = lastCursorSaveAt + fsyncIntervalNanos, napStart = Clock.monotonicNanos
                var millis: Int32 = 100
                if service.hasDirtyCursors {
                    millis = dueAt > napStart ? min(Int32(clamping: (dueAt - napStart) / 1_000_000 + 1), 100) : 0
                }
                service.sleep(unlessBeyond: next, ring: ring, millis: millis)
            }
        }
    }

    /// Producer marks and cursors go to SQLite at most this often (and at shutdown): the marks
    /// can always be read back from the spill itself, so they need not be saved per group.
    static let stateSaveNanos: UInt64 = 200_000_000

    /// True when the records waiting make a full block, or a quarter of the ring (so a small
    /// ring never waits on the group-commit window while producers are paused).
    private func blockIsDue(head: UInt64) -> Bool {
        let due = min(blockBytes, ring.byteCapacity / 4)
        var bytes = 0
        var sequence = next
        while sequence < head {
            bytes += ring.record(sequence).count
            if bytes >= due { return true }
            sequence += 1
        }
        return false
    }

    /// Writes one block of records from `next`. False when the write failed (reported).
    private func writeBlock(head: UInt64) -> Bool {
        var staged = 0
        var count: UInt32 = 0
        var firstIngest: UInt64 = 0, lastIngest: UInt64 = 0
        var space = writer.stagingSpace(minimum: blockBytes)
        var sequence = next
        while sequence < head && staged < blockBytes {
            let record = ring.record(sequence)
            if staged + record.count > space.count {
                if count > 0 { break }
                space = writer.stagingSpace(minimum: record.count)
            }
            guard let source = record.baseAddress, let target = space.baseAddress else { break }
            (target + staged).copyMemory(from: source, byteCount: record.count)
            lastIngest = DeliveredRecordLayout.ingestNanos(at: source)
            if count == 0 { firstIngest = lastIngest }
            noteMark(record, sequence)
            sessions.note(record)
            staged += record.count
            count += 1
            sequence += 1
        }
        do {
            let written = try writer.appendBlock(records: count, firstSequence: next, stagedBytes: staged,
                                                 firstIngest: firstIngest, lastIngest: lastIngest)
            service.metrics.spillRecords.increment(by: count)
            service.metrics.spillBytes.increment(by: written)
            if oldestUnsyncedIngest == 0 { oldestUnsyncedIngest = firstIngest }
        } catch {
            report(failure: "spill write failed: \(error)")
            return false
        }
        lastWritten = sequence - 1
        next = sequence
        service.writtenThrough.store(lastWritten, ordering: .releasing)
        return true
    }

    /// Producer marks for the records written since the last save. The current run of one
    /// producer's records updates `recentMark` in place; the dictionary is touched (hashing the
    /// id) only when the producer changes, so a run costs no hashing and no allocation.
    private func noteMark(_ record: UnsafeRawBufferPointer, _ sequence: UInt64) {
        guard let base = record.baseAddress else { return }
        let producer = DeliveredRecordLayout.producer(of: record)
        let producerSequence = DeliveredRecordLayout.producerSequence(at: base)
        if var mark = recentMark, producer.elementsEqual(mark.producer) {
            if producerSequence > mark.producerSequence {
                mark.producerSequence = producerSequence
                mark.relaySequence = sequence
                recentMark = mark
            }
            return
        }
        flushRecentMark()
        let id = Array(producer)
        var mark = marks[id] ?? ProducerMark(producer: id, producerSequence: 0, relaySequence: 0)
        if producerSequence > mark.producerSequence {
            mark.producerSequence = producerSequence
            mark.relaySequence = sequence
        }
        recentMark = mark
    }

    private func flushRecentMark() {
        guard let mark = recentMark else { return }
        marks[mark.producer] = mark
        recentMark = nil
    }

    /// fsync, then publish: acks may follow.
    private func groupCommit() -> Bool {
        let started = Clock.monotonicNanos
        do {
            try writer.sync()
        } catch {
            report(failure: "spill fsync failed: \(error)")
            return false
        }
        lastSynced = lastWritten
        lastSyncAt = Clock.monotonicNanos
        RelayMetrics.observe(service.metrics.fsyncTime, from: started, to: lastSyncAt)
        RelayMetrics.observe(service.metrics.durableLag, from: oldestUnsyncedIngest, to: Clock.wallNanos)
        oldestUnsyncedIngest = 0
        service.durableThrough.store(lastSynced, ordering: .releasing)
        // The ring keeps every record until it is fsync'd: a collector that is not live and has
        // fallen behind the ring finds in the spill everything it may be given.
        gate.advance(to: lastSynced + 1)
        service.progress.signal()
        if let previous = service.setFailure(nil) {
            log.log(.info, "spill_recovered_from_failure", ["was": previous])
        }
        return true
    }

    /// Saves the durable collectors' committed cursors alone, and publishes them.
    private func saveCursors() {
        lastCursorSaveAt = Clock.monotonicNanos
        let cursors = service.takeCursors()
        guard !cursors.isEmpty else { return }
        do {
            try store.save(marks: [], checkpoint: 0, cursors: cursors, atNanos: Clock.wallNanos)
            service.cursorsSaved(cursors)
        } catch {
            log.log(.warning, "state_save_failed", ["error": "\(error)", "effect": "COMMITTED waits until the cursor is saved"])
            for (name, through) in cursors { service.committed(name, through: through) }
        }
    }

    /// Logs and saves what replays found damaged (counted when found; see `noteReadDamage`).
    private func reportReadDamage() {
        for (damage, records) in service.takeUnreportedDamage() {
            let detail = "\(damage.segment) offset \(damage.offset): sequences \(damage.firstSequence) ... \(damage.lastSequence)"
            log.log(.error, "spill_block_damaged", ["segment": damage.segment, "offset": String(damage.offset),
                                                    "first": String(damage.firstSequence), "last": String(damage.lastSequence),
                                                    "lost_records": String(records)])
            do {
                try store.recordEvent(kind: "spill_block_damaged", detail: detail, records: records, atNanos: Clock.wallNanos)
                try store.addCountedGaps([damage.firstSequence ... damage.lastSequence])
            } catch {
                log.log(.warning, "state_save_failed", ["error": "\(error)"])
            }
        }
    }

    /// Saves the producer marks gathered since the last save (all of them fsync'd), the
    /// checkpoint they reach, committed cursors, and segments sealed since.
    private func saveState() {
        // Marks may be saved only for records already fsync'd.
        guard lastWritten == lastSynced else { return }
        flushRecentMark()
        lastStateSaveAt = Clock.monotonicNanos
        // Sealed segments (fsync'd when sealed): the next start compares instead of reading.
        let sealed = writer.takeSealed()
        do { try store.recordSealed(sealed) } catch {
            log.log(.warning, "state_save_failed", ["error": "\(error)", "effect": "the next start reads these segments again"])
        }
        let cursors = service.takeCursors()
        unsavedSessions += sessions.take()
        guard !marks.isEmpty || !cursors.isEmpty || lastSynced > savedCheckpoint || !unsavedSessions.isEmpty else { return }
        do {
            try store.save(marks: Array(marks.values), checkpoint: lastSynced, cursors: cursors, sessions: unsavedSessions,
                           atNanos: Clock.wallNanos)
            marks.removeAll(keepingCapacity: true)
            unsavedSessions.removeAll(keepingCapacity: true)
            savedCheckpoint = lastSynced
            service.cursorsSaved(cursors)
        } catch {
            // The spill itself is durable, so acks stay correct: a restart reads the marks back
            // from the spill. Cursors are retried with the next save.
            log.log(.warning, "state_save_failed", ["error": "\(error)"])
            for (name, through) in cursors { service.committed(name, through: through) }
        }
    }

    private func report(failure message: String) {
        if service.setFailure(message) != message {
            log.log(.error, "spill_failed", ["error": message, "effect": "acks and producer reads paused until it recovers"])
        }
    }

    /// Removes segments past the age or size limit, oldest first, counting records that no
    /// durable collector had committed yet (forced loss).
    private func applyRetention() {
        let maxAge = UInt64(configuration.retentionMaxAgeMillis) * 1_000_000
        let maxBytes = configuration.retentionMaxBytes
        let now = Clock.wallNanos
        var removedThrough: UInt64 = 0
        defer { if removedThrough > 0 { pruneSessions(removedThrough: removedThrough) } }
        while let oldest = service.catalog.snapshot().first, service.catalog.count > 1 {
            let tooOld = !oldest.isEmpty && oldest.lastIngestNanos + maxAge < now
            let tooBig = maxBytes > 0 && service.catalog.totalBytes > maxBytes
            guard tooOld || tooBig, let removed = service.catalog.removeOldest() else { return }
            try? Directory.remove(removed.path)
            // Lost for a durable collector: records it had not committed. Those still in the
            // ring are still given from memory, so they count only if it misses them later
            // (the core counts that when it meets the gap).
            var forced: UInt64 = 0, uncommitted: UInt64 = 0
            if !removed.isEmpty, let committed = service.lowestCommitted(), committed < removed.lastSequence {
                let low = max(committed + 1, removed.firstSequence)
                uncommitted = removed.lastSequence - low + 1
                let inMemoryFrom = ring.tail
                if low < inMemoryFrom { forced = service.countForcedLoss(low ... min(removed.lastSequence, inMemoryFrom - 1)) }
            }
            removedThrough = max(removedThrough, removed.lastIngestNanos)
            service.retentionRemovedSegments.wrappingIncrement(ordering: .relaxed)
            service.metrics.retentionSegments.increment()
            let reason = tooOld ? "age" : "size"
            let detail = "\(removed.path) sequences \(removed.firstSequence) ... \(removed.lastSequence) (\(reason))"
            try? store.recordEvent(kind: forced > 0 ? "retention_forced_loss" : "retention_removed", detail: detail,
                                   records: forced, atNanos: now)
            log.log(forced > 0 ? .warning : .info, forced > 0 ? "retention_forced_loss" : "retention_removed",
                    ["segment": removed.path, "records": String(removed.records), "uncommitted_records": String(uncommitted),
                     "lost_records": String(forced),
                     "reason": reason])
        }
    }

    /// Session summaries follow the spill's retention: a session whose last record is older
    /// than everything the spill still holds is forgotten.
    private func pruneSessions(removedThrough: UInt64) {
        let oldestHeld = service.catalog.snapshot().first { !$0.isEmpty }?.firstIngestNanos ?? removedThrough + 1
        do { try store.pruneSessions(lastSeenBefore: oldestHeld) } catch {
            log.log(.warning, "state_save_failed", ["error": "\(error)"])
        }
    }
}
