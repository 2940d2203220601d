import AllegroPosix

/// What the spill thread saves to its sink: cursors, producer marks and session counts, sealed
/// segments, and damage found by replays.
extension SpillLoop {
    /// Saves the durable collectors' committed cursors alone, and publishes them.
    func saveCursors() {
        lastCursorSaveAt = Clock.monotonicNanos
        let cursors = pipeline.takeCursors()
        guard !cursors.isEmpty else { return }
        do {
            try sink.save(marks: [], checkpoint: 0, cursors: cursors, sessions: [], atNanos: Clock.wallNanos)
            pipeline.cursorsSaved(cursors)
        } catch {
            pipeline.log.log(.warning, "state_save_failed", ["error": "\(error)", "effect": "COMMITTED waits until the cursor is saved"])
            pipeline.cursorsNotSaved(cursors)
        }
    }

    /// Logs and saves what replays found damaged (counted when found; see
    /// `SpillPipeline.noteReadDamage`).
    func reportReadDamage() {
        for (damage, records) in pipeline.takeUnreportedDamage() {
            let detail = "\(damage.segment) offset \(damage.offset): sequences \(damage.firstSequence) ... \(damage.lastSequence)"
            pipeline.log.log(.error, "spill_block_damaged", ["segment": damage.segment, "offset": String(damage.offset),
                                                             "first": String(damage.firstSequence), "last": String(damage.lastSequence),
                                                             "lost_records": String(records)])
            attempt("record read damage") {
                try sink.recordEvent(kind: "spill_block_damaged", detail: detail, records: records, atNanos: Clock.wallNanos)
                try sink.addCountedGaps([damage.firstSequence ... damage.lastSequence])
            }
        }
    }

    /// Saves the producer marks gathered since the last save (all of them fsync'd), the
    /// checkpoint they reach, committed cursors, session counts, and segments sealed since.
    func saveState() {
        // Marks may be saved only for records already fsync'd.
        guard lastWritten == lastSynced else { return }
        flushRecentMark()
        lastStateSaveAt = Clock.monotonicNanos
        // Sealed segments (fsync'd when sealed): the next start compares instead of reading.
        let sealed = writer.takeSealed()
        if !sealed.isEmpty {
            attempt("record sealed segments", effect: "the next start reads these segments again") { try sink.recordSealed(sealed) }
        }
        let cursors = pipeline.takeCursors()
        unsavedSessions += sessions.take()
        guard !marks.isEmpty || !cursors.isEmpty || lastSynced > savedCheckpoint || !unsavedSessions.isEmpty else { return }
        do {
            try sink.save(marks: marks.all, checkpoint: lastSynced, cursors: cursors, sessions: unsavedSessions,
                          atNanos: Clock.wallNanos)
            marks.removeAll()
            unsavedSessions.removeAll(keepingCapacity: true)
            savedCheckpoint = lastSynced
            pipeline.cursorsSaved(cursors)
        } catch {
            // The spill itself is durable, so acks stay correct: a restart reads the marks back
            // from the spill. Cursors are retried with the next save.
            pipeline.log.log(.warning, "state_save_failed", ["error": "\(error)"])
            pipeline.cursorsNotSaved(cursors)
        }
    }
}
