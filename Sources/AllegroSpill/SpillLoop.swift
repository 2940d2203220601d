import AllegroPosix
import AllegroRing
import AllegroWire

/// The spill thread's own state and loop: write blocks from the ring, group commit, save state,
/// apply retention. Nothing here is touched by another thread.
final class SpillLoop: @unchecked Sendable {
    // @unchecked: created on the I/O thread, then used only by the spill thread it is handed to.
    let pipeline: SpillPipeline
    let ring: RecordRing
    let gate: RingGate
    let sink: SpillStateSink
    let writer: SpillWriter
    let settings: SpillSettings
    let blockBytes: Int
    let fsyncIntervalNanos: UInt64
    /// The longest the loop writes blocks without an fsync while it is behind the ring (a burst):
    /// the interval, but at least `minBurstNanos`, so a burst is written whole and fsync'd once
    /// instead of once per block.
    let burstSyncNanos: UInt64
    /// Collectors' commits are saved at most this often (and at least within it): the interval,
    /// at least `minCursorSaveNanos`, so no interval does not mean a SQLite write per loop.
    let cursorSaveNanos: UInt64
    static let minBurstNanos: UInt64 = 5_000_000
    /// The spill thread's timer slack, so the kernel does not add Linux's default 50 µs to the
    /// end of a nap within an interval (scheduling delay still does: BENCHMARKS.md, issue 22's
    /// seventh step).
    static let timerSlackNanos: UInt = 1_000
    static let minCursorSaveNanos: UInt64 = 5_000_000

    var next: UInt64
    var lastWritten: UInt64
    var lastSynced: UInt64
    /// When the last fsync started: the group-commit interval runs from here.
    var lastSyncAt = Clock.monotonicNanos
    /// When the last fsync returned: a burst's writing time runs from here, so a slow fsync does
    /// not eat into the next burst (a 5 ms fsync would otherwise leave one block per fsync).
    var lastSyncEndAt = Clock.monotonicNanos
    var lastRetentionAt: UInt64 = 0
    var lastStateSaveAt: UInt64 = 0
    var lastCursorSaveAt: UInt64 = 0
    var lastPruneAt = Clock.monotonicNanos
    var savedCheckpoint: UInt64 = 0
    /// Producer marks seen since the last save; the current producer's run is in `recentMark`.
    var marks = ProducerMarks()
    var recentMark: ProducerMark?
    /// Where a producer id is copied to look up its mark; its capacity is kept.
    private var producerScratch: [UInt8] = []
    var sessions = SessionTally()
    /// Session counts taken from the tally but not yet saved (a failed save retries them).
    var unsavedSessions: [SessionDelta] = []
    /// Ingest time of the oldest record written since the last fsync (0: none).
    var oldestUnsyncedIngest: UInt64 = 0

    init(pipeline: SpillPipeline, ring: RecordRing, gate: RingGate) {
        self.pipeline = pipeline
        self.ring = ring
        self.gate = gate
        sink = pipeline.sink
        settings = pipeline.settings
        writer = SpillWriter(directory: settings.directory, catalog: pipeline.catalog, segmentBytes: settings.segmentBytes,
                             segmentNanos: UInt64(settings.retentionMaxAgeMillis) * 1_000_000 / 8,
                             codec: settings.codec, level: Int32(settings.compressionLevel),
                             preallocateBytes: settings.preallocateBytes)
        blockBytes = settings.blockBytes
        fsyncIntervalNanos = UInt64(settings.fsyncIntervalMicros) * 1_000
        // At least 5 ms whatever the interval: under a flood every fsync costs CPU as well as
        // time, and a 1 ms burst made five times the fsyncs of a 5 ms one (throughput -22 % with
        // lz4, BENCHMARKS.md); a trickle is not affected (it is fsync'd when written).
        burstSyncNanos = max(fsyncIntervalNanos, Self.minBurstNanos)
        cursorSaveNanos = max(fsyncIntervalNanos, Self.minCursorSaveNanos)
        next = gate.next
        lastWritten = pipeline.writtenThrough.load(ordering: .relaxed)
        lastSynced = lastWritten
    }

    func run() {
        while true {
            let head = ring.head
            var now = Clock.monotonicNanos
            // Commits are saved within an fsync interval, whatever the spill is doing (even
            // while its disk writes fail): COMMITTED waits for this save.
            if now - lastCursorSaveAt >= cursorSaveNanos && pipeline.hasDirtyCursors { saveCursors() }
            if next < head {
                // Group commit, on the leading edge: records that find the last fsync at least an
                // interval old are written and fsync'd at once (a trickle waits only for its own
                // fsync: collectors other than live ones are given records only after it); records
                // arriving sooner gather until the interval since that fsync is up (or a block is
                // full), so the disk sees at most one fsync per interval however fast records come.
                // With no interval (0) nothing waits: records that arrived during an fsync are
                // written together after it, and a burst is written whole (up to `burstSyncNanos`)
                // before its one fsync, as PostgreSQL commits with no commit delay.
                let sinceSync = now - lastSyncAt
                if sinceSync < fsyncIntervalNanos && !pipeline.isStopping && !blockIsDue(head: head) {
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
            // Records that arrived while a block was written go into this fsync too (in a block
            // of their own): at a 1 ms interval the next fsync would be up to 1 ms away for them.
            if lastWritten > lastSynced && (next == ring.head || now - lastSyncEndAt >= burstSyncNanos) {
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
                let cutoff = Clock.wallNanos &- UInt64(settings.retentionMaxAgeMillis) * 1_000_000
                attempt("prune producers") { try sink.pruneProducers(notSeenSince: cutoff) }
            }
            if now - lastStateSaveAt >= Self.stateSaveNanos {
                saveState()
                reportReadDamage()
            }
            if next == ring.head && lastWritten == lastSynced {
                if pipeline.isStopping {
                    saveState()
                    writer.close()
                    // Everything assigned is spilled: the next run continues with no gap.
                    attempt("finish the clean stop") { try sink.finishCleanStop(lastAssigned: next - 1) }
                    return
                }
                // A commit that came too soon after the last cursor save is saved when the
                // interval is up, not after a full nap.
                let dueAt = lastCursorSaveAt + cursorSaveNanos, napStart = Clock.monotonicNanos
                var millis: Int32 = 100
                if pipeline.hasDirtyCursors {
                    millis = dueAt > napStart ? min(Int32(clamping: (dueAt - napStart) / 1_000_000 + 1), 100) : 0
                }
                pipeline.sleep(unlessBeyond: next, ring: ring, millis: millis)
            }
        }
    }

    /// Producer marks and cursors go to the sink at most this often (and at shutdown): the marks
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
            pipeline.metrics.writtenRecords.increment(by: count)
            pipeline.metrics.writtenBytes.increment(by: written)
            if oldestUnsyncedIngest == 0 { oldestUnsyncedIngest = firstIngest }
        } catch {
            report(failure: "spill write failed: \(error)")
            return false
        }
        lastWritten = sequence - 1
        next = sequence
        pipeline.writtenThrough.store(lastWritten, ordering: .releasing)
        return true
    }

    /// Producer marks for the records written since the last save. The current run of one
    /// producer's records advances `recentMark` in place; `marks` is touched (hashing the id)
    /// only when the producer changes, so a run costs no hashing and no allocation.
    private func noteMark(_ record: UnsafeRawBufferPointer, _ sequence: UInt64) {
        guard let base = record.baseAddress else { return }
        let producer = DeliveredRecordLayout.producer(of: record)
        let producerSequence = DeliveredRecordLayout.producerSequence(at: base)
        if !(recentMark.map { ByteCompare.equal($0.producer, producer) } ?? false) {
            flushRecentMark()
            // Looked up through a reused buffer: no allocation for a producer already in
            // `marks` (64 interleaved producers switch on nearly every record).
            producerScratch.removeAll(keepingCapacity: true)
            producerScratch.append(contentsOf: producer)
            // A producer new since the last save copies its id once (its one allocation).
            recentMark = marks[producerScratch] ?? ProducerMark(producer: producerScratch.withUnsafeBytes { Array($0) })
        }
        recentMark?.advance(producerSequence: producerSequence, relaySequence: sequence)
    }

    func flushRecentMark() {
        guard let mark = recentMark else { return }
        marks.advance(to: mark)
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
        // The interval runs from this fsync's start: fsyncs start at least an interval apart,
        // and records that arrived during a slow one need not wait a whole interval after it.
        lastSyncAt = started
        lastSyncEndAt = Clock.monotonicNanos
        SpillMetrics.observe(pipeline.metrics.fsyncTime, from: started, to: lastSyncEndAt)
        SpillMetrics.observe(pipeline.metrics.durableLag, from: oldestUnsyncedIngest, to: Clock.wallNanos)
        oldestUnsyncedIngest = 0
        pipeline.durableThrough.store(lastSynced, ordering: .releasing)
        // The ring keeps every record until it is fsync'd: a collector that is not live and has
        // fallen behind the ring finds in the spill everything it may be given.
        gate.advance(to: lastSynced + 1)
        pipeline.progress.signal()
        if let previous = pipeline.setFailure(nil) {
            pipeline.log.log(.info, "spill_recovered_from_failure", ["was": previous])
        }
        return true
    }

    private func report(failure message: String) {
        if pipeline.setFailure(message) != message {
            pipeline.log.log(.error, "spill_failed", ["error": message, "effect": "acks and producer reads paused until it recovers"])
        }
    }

    /// Runs a sink call; a failure is logged with what it means (the caller retries later).
    func attempt(_ what: String, effect: String = "", _ body: () throws -> Void) {
        do { try body() } catch {
            pipeline.log.log(.warning, "state_save_failed", ["while": what, "error": "\(error)", "effect": effect])
        }
    }
}
