import AllegroLog
import AllegroPosix
import AllegroRing
import AllegroSpill
import Foundation
import Glibc
import Synchronization
import Testing

/// State the spill thread saves, kept in memory; `failing` makes every call throw.
final class MemorySink: SpillStateSink {
    struct Refused: Error {}
    struct Saved {
        var checkpoint: UInt64 = 0
        var marks = ProducerMarks()
        var cursors: [String: UInt64] = [:]
        var sessionRecords: UInt64 = 0
        var sealed: [SegmentInfo] = []
        var events: [String] = []
        var cleanStop: UInt64?
        var failing = false
    }

    let saved = Mutex(Saved())

    var failing: Bool {
        get { saved.withLock { $0.failing } }
        set { saved.withLock { $0.failing = newValue } }
    }

    var snapshot: Saved { saved.withLock { $0 } }

    private func change(_ body: (inout Saved) -> Void) throws {
        try saved.withLock { state in
            guard !state.failing else { throw Refused() }
            body(&state)
        }
    }

    func save(marks: [ProducerMark], checkpoint: UInt64, cursors: [String: UInt64], sessions: [SessionDelta],
              atNanos: UInt64) throws {
        try change { state in
            for mark in marks { state.marks.advance(to: mark) }
            state.checkpoint = max(state.checkpoint, checkpoint)
            for (name, through) in cursors { state.cursors[name] = max(state.cursors[name] ?? 0, through) }
            state.sessionRecords += sessions.reduce(0) { $0 + $1.records }
        }
    }

    func recordSealed(_ segments: [SegmentInfo]) throws { try change { $0.sealed += segments } }
    func recordEvent(kind: String, detail: String, records: UInt64, atNanos: UInt64) throws { try change { $0.events.append(kind) } }
    func addCountedGaps(_ ranges: [ClosedRange<UInt64>]) throws { try change { _ in } }
    func pruneProducers(notSeenSince nanos: UInt64) throws { try change { _ in } }
    func pruneSessions(lastSeenBefore nanos: UInt64) throws { try change { _ in } }
    func finishCleanStop(lastAssigned: UInt64) throws { try change { $0.cleanStop = lastAssigned } }
}

/// The spill thread on a real temporary directory and a real ring, with an in-memory state
/// sink and system calls failed on purpose: what is published, saved and kept when the disk or
/// the state database fails.
@Suite(.serialized) struct SpillPipelineTests {
    private struct Running {
        let fixture: SpillFixture
        let ring: RecordRing
        let pipeline: SpillPipeline
        let sink: MemorySink
    }

    private func start(durable: [String] = ["timmy"], niceIncrement: Int32 = 0, intervalMicros: Int = 1_000) throws -> Running {
        let fixture = try SpillFixture()
        let settings = SpillSettings(directory: fixture.directory, segmentBytes: 1 << 20, blockBytes: 4096, fsyncIntervalMicros: intervalMicros,
                                     compressionLevel: 1, retentionMaxAgeMillis: 3_600_000, retentionMaxBytes: 0,
                                     threadNiceIncrement: niceIncrement)
        let sink = MemorySink()
        let pipeline = try SpillPipeline(settings: settings, catalog: SegmentCatalog(), lastSpilled: 0, durableCollectors: durable,
                                         cursors: [:], accounted: [], sink: sink, metrics: SpillMetrics(),
                                         log: EventLog(minimum: .critical))
        let ring = RecordRing(byteCapacity: 1 << 16, slotCapacity: 1 << 10)
        pipeline.start(ring: ring, gate: ring.addGate(from: ring.head))
        return Running(fixture: fixture, ring: ring, pipeline: pipeline, sink: sink)
    }

    /// Appends records `count` more records as the I/O thread would (relay sequence = ring sequence).
    private func append(_ count: Int, to running: Running) {
        for _ in 0 ..< count {
            let appended = running.ring.append(size: SpillFixture.record(running.ring.head).count) { space, sequence in
                space.copyBytes(from: SpillFixture.record(sequence))
            }
            #expect(appended != nil, "the ring has room")
        }
        running.pipeline.recordsAppended()
    }

    /// Waits (at most 20 s: a deadline for a hang, not a performance limit) until `condition` holds.
    private func eventually(_ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(20)
        while !condition() {
            if Date() > deadline { return false }
            usleep(2_000)
        }
        return true
    }

    @Test func recordsInTheRingBecomeDurableAndTheirMarksAndSessionsAreSaved() throws {
        let running = try start()
        append(100, to: running)
        #expect(eventually { running.pipeline.durableThrough.load(ordering: .acquiring) == 100 })
        #expect(eventually { running.sink.snapshot.checkpoint == 100 })
        let saved = running.sink.snapshot
        #expect(saved.marks[Array("p".utf8)] == ProducerMark(producer: Array("p".utf8), producerSequence: 100, relaySequence: 100))
        #expect(saved.sessionRecords == 100)
        #expect(running.pipeline.stop(timeoutSeconds: 20))
        #expect(running.sink.snapshot.cleanStop == 100, "a clean stop reserves through the last number it spilled")
        // What a restart finds on disk: every record, in order, undamaged.
        #expect(try running.fixture.restart().damage.isEmpty)
        #expect(running.fixture.readAll().map(\.0) == Array(1 ... 100))
    }

    @Test func aSpillThreadThatCannotLowerItsPrioritySpillsAsBefore() throws {
        let fault = SystemFaults.inject(.setpriority, errno: EPERM)
        defer { SystemFaults.remove(fault) }
        let running = try start(niceIncrement: 3)
        append(10, to: running)
        #expect(eventually { running.pipeline.durableThrough.load(ordering: .acquiring) == 10 })
        #expect(SystemFaults.fired(fault) == 1, "the spill thread tried once, at its start")
        #expect(running.pipeline.failure == nil, "a priority left as it was is not a spill failure")
        #expect(running.pipeline.stop(timeoutSeconds: 20))
    }

    @Test func theIntervalRunsFromTheLastFsyncsStartSoRecordsThatArriveDuringASlowOneWaitNoLonger() throws {
        // An interval of 0.6 s and a first fdatasync that takes 1.2 s: the record appended during
        // it has waited longer than the interval when it returns, so it is fsync'd straight after.
        // Counted from the slow fsync's end, it would wait at least 0.6 s more.
        let running = try start(intervalMicros: 600_000)
        let slow = SystemFaults.inject(.fdatasync, delayNanos: 1_200_000_000, pathContaining: running.fixture.directory)
        defer { SystemFaults.remove(slow) }
        append(1, to: running)
        #expect(eventually { SystemFaults.fired(slow) == 1 }, "the first group commit's fdatasync has begun")
        append(1, to: running)
        #expect(eventually { running.pipeline.durableThrough.load(ordering: .acquiring) >= 1 })
        let firstDone = Date()
        #expect(eventually { running.pipeline.durableThrough.load(ordering: .acquiring) == 2 })
        let waited = Date().timeIntervalSince(firstDone)
        #expect(waited < 0.45, "fsync'd \(waited) s after the slow one ended: the interval was counted from its end")
        #expect(running.pipeline.stop(timeoutSeconds: 20))
        #expect(try running.fixture.restart().damage.isEmpty)
        #expect(running.fixture.readAll().map(\.0) == [1, 2])
    }

    @Test func aBacklogThatGathersDuringASlowFsyncIsWrittenWholeBeforeTheNextOne() throws {
        // Every fdatasync takes 30 ms, longer than a burst's 5 ms. Nine blocks' worth of records
        // arrive during the first; they are written in well under 5 ms after it returns, and
        // fsync'd together. A burst counted from the slow fsync's start would be over at once,
        // and each block would get an fsync of its own.
        let running = try start()
        let slow = SystemFaults.inject(.fdatasync, delayNanos: 30_000_000, pathContaining: running.fixture.directory, times: 1_000)
        defer { SystemFaults.remove(slow) }
        append(1, to: running)
        #expect(eventually { SystemFaults.fired(slow) == 1 }, "the first group commit's fdatasync has begun")
        append(600, to: running)
        #expect(eventually { running.pipeline.durableThrough.load(ordering: .acquiring) == 601 })
        #expect(SystemFaults.fired(slow) <= 3, "\(SystemFaults.fired(slow)) fdatasyncs for one record and one backlog")
        #expect(running.pipeline.stop(timeoutSeconds: 20))
        #expect(try running.fixture.restart().damage.isEmpty)
        #expect(running.fixture.readAll().map(\.0) == Array(1 ... 601))
    }

    @Test func aFailedWriteHoldsDurabilityBackIsReportedAndIsRetriedUntilTheDiskRecovers() throws {
        let running = try start()
        let fault = SystemFaults.inject(.pwrite, errno: ENOSPC, pathContaining: running.fixture.directory, times: 3)
        defer { SystemFaults.remove(fault) }
        append(10, to: running)
        #expect(eventually { running.pipeline.failure != nil })
        #expect(running.pipeline.failure?.contains("spill write failed") == true)
        #expect(running.pipeline.durableThrough.load(ordering: .acquiring) == 0, "nothing unwritten is published")
        #expect(running.ring.tail == 1, "the ring keeps every record the spill has not fsync'd")
        #expect(eventually { running.pipeline.durableThrough.load(ordering: .acquiring) == 10 })
        #expect(SystemFaults.fired(fault) == 3)
        #expect(running.pipeline.failure == nil, "recovered")
        #expect(running.pipeline.stop(timeoutSeconds: 20))
        #expect(try running.fixture.restart().damage.isEmpty, "the failed writes left nothing behind")
        #expect(running.fixture.readAll().map(\.0) == Array(1 ... 10))
    }

    @Test func aStateDatabaseThatFailsHoldsBackCommittedButNotDurability() throws {
        let running = try start()
        running.sink.failing = true
        append(10, to: running)
        running.pipeline.committed("timmy", through: 5)
        #expect(eventually { running.pipeline.durableThrough.load(ordering: .acquiring) == 10 },
                "acks depend on the spill alone: marks can be read back from it")
        // Several save attempts fail; the cursor stays unsaved, so COMMITTED is not answered.
        usleep(300_000)
        #expect(running.pipeline.savedCursor("timmy") == 0)
        running.sink.failing = false
        #expect(eventually { running.pipeline.savedCursor("timmy") == 5 })
        #expect(running.sink.snapshot.cursors["timmy"] == 5)
        #expect(eventually { running.sink.snapshot.checkpoint == 10 }, "the marks not saved earlier are saved now")
        #expect(running.pipeline.stop(timeoutSeconds: 20))
    }

    @Test func forcedLossIsCountedOnceHoweverOftenItIsMet() throws {
        let running = try start()
        #expect(running.pipeline.countForcedLoss(5 ... 9) == 5)
        #expect(running.pipeline.countForcedLoss(7 ... 12) == 3, "7 ... 9 were counted already")
        #expect(running.pipeline.retentionDropped.load(ordering: .relaxed) == 8)
        #expect(running.pipeline.stop(timeoutSeconds: 20))
    }
}
