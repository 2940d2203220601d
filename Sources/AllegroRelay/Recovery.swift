import AllegroLog
import AllegroPosix
import AllegroSpill
import AllegroStore

/// Another relay holds the data directory's lock.
public struct DataDirectoryInUse: Error, CustomStringConvertible {
    public var path: String
    public var description: String {
        "the data directory \(path) is in use by another allegro relay; stop it or choose another --data directory"
    }
}

/// Everything the relay resumes from at start: the spill as recovery left it, the state
/// database, and where relay sequences continue.
struct ResumePoint {
    /// The data directory's lock (flock on `DATA/lock`): held while this descriptor is open.
    let lock: File
    let store: StateStore
    let catalog: SegmentCatalog
    let spillDirectory: String
    /// The first relay sequence this run assigns.
    let firstSequence: UInt64
    /// The last sequence in the spill (all of it fsync'd): what is already safe.
    let lastSpilled: UInt64
    let cursors: [String: UInt64]
    let marks: [ProducerMark]
    let skips: SkippedSequences
    /// What start-up recovery found, for `/status` and `/metrics`.
    let recovery: RelayStatus.Recovery
    /// The identity WELCOME carries (`RelayIdentity`).
    let relayID: String
    /// Numbers recovery counted as lost, this start and earlier ones.
    let countedGaps: [ClosedRange<UInt64>]

    /// Relay sequences are reserved this many at a time, ahead of use.
    static let reservationChunk: UInt64 = 1 << 20

    /// Where the relay core starts.
    var coreStart: CoreStart {
        CoreStart(firstSequence: firstSequence, reservedThrough: firstSequence - 1 + Self.reservationChunk, cursors: cursors,
                  marks: marks, skips: skips, recovery: recovery)
    }

    /// Opens the data directory: state database, spill recovery (reported, never fatal for a
    /// damaged block), producer marks brought up to date from the spill's tail, and the skip of
    /// numbers an earlier run reserved but never spilled.
    static func open(_ configuration: RelayConfiguration, log: EventLog) throws -> ResumePoint {
        let data = configuration.dataDirectory
        try Directory.create(data)
        // One relay per data directory: a second would interleave spill writes. The lock is
        // held while its descriptor is open: the server keeps it for its whole life.
        let lock = try File.open(data + "/lock", create: true)
        guard try lock.tryLock() else { throw DataDirectoryInUse(path: data) }
        let relayID = try RelayIdentity.resolve(configured: configuration.relayID, dataDirectory: data, log: log)
        let now = Clock.wallNanos
        let opened = try StateStore.openOrSetAside(path: data + "/state.sqlite", nowNanos: now)
        let store = opened.store, state = opened.state
        var recovery = RelayStatus.Recovery()
        if let target = opened.setAsideTo {
            // Rebuilt from the spill below: marks from every block, numbers after the last one.
            // Lost with it: committed cursors (durable collectors resume from where SUBSCRIBE
            // says, so they may see records again), skipped ranges (gaps now count as lost)
            // and session counts of records no longer in the spill.
            recovery.stateRebuilt = true
            log.log(.error, "state_set_aside", ["path": data + "/state.sqlite", "moved_to": target, "reason": opened.reason ?? "",
                                                 "consequence": "rebuilt from the spill; committed cursors and skips are gone"])
            try store.recordEvent(kind: "state_set_aside", detail: "\(target): \(opened.reason ?? "")", records: 0, atNanos: now)
        }
        let spillDirectory = data + "/spill"
        // Session summaries were saved with the marks, through the checkpoint: count the rest.
        var sessions = SessionTally()
        let report = try SpillRecovery.run(directory: spillDirectory, marksAfter: state.marksCheckpoint,
                                           durableThrough: state.marksCheckpoint,
                                           explained: state.skips.ranges + state.countedGaps,
                                           sealed: state.sealedSegments) { sessions.note($0) }
        try store.addCountedGaps(report.countedGaps)
        try store.recordSealed(report.sealed, replacingAll: true)
        for damage in report.damage {
            let detail = damage.quarantineFile.isEmpty ? damage.segment
                : "\(damage.segment) offset \(damage.offset) length \(damage.length) -> \(damage.quarantineFile)"
            let lost = damage.lostRecords > 0
            log.log(lost ? .error : .warning, damage.kind.rawValue,
                    ["segment": damage.segment, "offset": String(damage.offset), "bytes": String(damage.length),
                     "lost_records": String(damage.lostRecords), "unconfirmed_records": String(damage.unconfirmedRecords),
                     "quarantine": damage.quarantineFile])
            try store.recordEvent(kind: damage.kind.rawValue, detail: detail, records: damage.lostRecords + damage.unconfirmedRecords,
                                  atNanos: now)
        }
        for repair in report.repairs {
            log.log(.warning, repair.kind.rawValue, ["detail": repair.detail])
            try store.recordEvent(kind: repair.kind.rawValue, detail: repair.detail, records: 0, atNanos: now)
        }
        if report.lostRecords > 0 {
            log.log(.error, "spill_records_lost", ["records": String(report.lostRecords),
                                                   "unconfirmed_records": String(report.unconfirmedRecords)])
        }
        recovery.lostRecords = report.lostRecords
        recovery.unconfirmedRecords = report.unconfirmedRecords
        recovery.setAside = report.damage.filter { $0.kind != .missing }.count
        recovery.repaired = report.repairs.count

        let lastSpilled = report.lastSequence
        var marks = ProducerMarks()
        var found = report.producerMarks
        // Marks must never be ahead of what the spill holds: a resend of records it lost would
        // be dropped as a duplicate and acknowledged. When recovery cut anything (or the spill
        // ends before the saved checkpoint), stored marks beyond the spill are dropped and every
        // producer's mark is read again from every block that is left.
        let cut = !report.damage.isEmpty || !report.repairs.isEmpty || lastSpilled < state.marksCheckpoint
        if cut {
            found = SpillRecovery.producerMarks(in: report.segments)
            log.log(.warning, "producer_marks_rebuilt", ["reason": "the spill lost records that marks had seen",
                                                         "last_sequence": String(lastSpilled)])
        }
        for mark in state.marks where !cut || mark.relaySequence <= lastSpilled { marks.advance(to: mark) }
        for spilled in found.all { marks.advance(to: spilled) }
        var skips = state.skips
        // Numbers up to the last group commit were fsync'd (perhaps acked): if the spill lacks
        // them now, they were damaged, not skipped. Beyond it, numbers an earlier run reserved
        // went at most to records never acknowledged: never reuse them; mark them skipped. A
        // range already skipped stays as it is (two crashes in a row): the new skip starts
        // after it, so skips never overlap.
        let skipFrom = max(lastSpilled, state.marksCheckpoint, skips.upperBound) + 1
        if state.reservedThrough >= skipFrom {
            let skipped = skipFrom ... state.reservedThrough
            try store.addSkip(skipped)
            skips.insert(skipped)
            try store.recordEvent(kind: "sequences_skipped", detail: "\(skipped.lowerBound) ... \(skipped.upperBound)",
                                  records: 0, atNanos: now)
            log.log(.warning, "sequences_skipped", ["first": String(skipped.lowerBound), "last": String(skipped.upperBound)])
        }
        let first = max(lastSpilled, state.reservedThrough) + 1
        try store.reserve(through: first - 1 + reservationChunk)
        if cut { try store.replaceMarks(marks.all, checkpoint: lastSpilled, atNanos: now) }
        try store.save(marks: marks.all, checkpoint: lastSpilled, cursors: [:], sessions: sessions.take(), atNanos: now)
        log.log(.info, "spill_recovered", ["segments": String(report.segments.count), "segments_not_read": String(report.unreadSegments),
                                           "last_sequence": String(lastSpilled),
                                           "next_sequence": String(first), "producers": String(marks.count)])
        return ResumePoint(lock: lock, store: store, catalog: SegmentCatalog(report.segments), spillDirectory: spillDirectory,
                           firstSequence: first, lastSpilled: lastSpilled, cursors: state.cursors,
                           marks: marks.all, skips: skips, recovery: recovery, relayID: relayID,
                           countedGaps: state.countedGaps + report.countedGaps)
    }
}
