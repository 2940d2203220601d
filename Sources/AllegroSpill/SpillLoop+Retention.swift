import AllegroPosix

/// Retention on the spill thread: segments past the age or size limit are removed, oldest first,
/// and records no durable collector had committed are counted (forced loss), never silent.
extension SpillLoop {
    /// Removes segments past the age or size limit, oldest first (never the one being written),
    /// counting records that no durable collector had committed yet and that are no longer in
    /// the ring.
    func applyRetention() {
        let maxAge = UInt64(settings.retentionMaxAgeMillis) * 1_000_000
        let maxBytes = settings.retentionMaxBytes
        let catalog = pipeline.catalog
        let now = Clock.wallNanos
        var removedThrough: UInt64 = 0
        defer { if removedThrough > 0 { pruneSessions(removedThrough: removedThrough) } }
        while let oldest = catalog.snapshot().first, catalog.count > 1 {
            let tooOld = !oldest.isEmpty && oldest.lastIngestNanos + maxAge < now
            let tooBig = maxBytes > 0 && catalog.totalBytes > maxBytes
            guard tooOld || tooBig, let removed = catalog.removeOldest() else { return }
            try? Directory.remove(removed.path)
            // Lost for a durable collector: records it had not committed. Those still in the
            // ring are still given from memory, so they count only if it misses them later
            // (the relay core counts that when it meets the gap).
            var forced: UInt64 = 0, uncommitted: UInt64 = 0
            if !removed.isEmpty, let committed = pipeline.lowestCommitted(), committed < removed.lastSequence {
                let low = max(committed + 1, removed.firstSequence)
                uncommitted = removed.lastSequence - low + 1
                let inMemoryFrom = ring.tail
                if low < inMemoryFrom { forced = pipeline.countForcedLoss(low ... min(removed.lastSequence, inMemoryFrom - 1)) }
            }
            removedThrough = max(removedThrough, removed.lastIngestNanos)
            pipeline.retentionRemovedSegments.wrappingIncrement(ordering: .relaxed)
            pipeline.metrics.retentionSegments.increment()
            let reason = tooOld ? "age" : "size"
            let detail = "\(removed.path) sequences \(removed.firstSequence) ... \(removed.lastSequence) (\(reason))"
            let kind = forced > 0 ? "retention_forced_loss" : "retention_removed"
            attempt("record retention") { try sink.recordEvent(kind: kind, detail: detail, records: forced, atNanos: now) }
            pipeline.log.log(forced > 0 ? .warning : .info, kind,
                             ["segment": removed.path, "records": String(removed.records), "uncommitted_records": String(uncommitted),
                              "lost_records": String(forced), "reason": reason])
        }
    }

    /// Session summaries follow the spill's retention: a session whose last record is older
    /// than everything the spill still holds is forgotten.
    private func pruneSessions(removedThrough: UInt64) {
        let oldestHeld = pipeline.catalog.snapshot().first { !$0.isEmpty }?.firstIngestNanos ?? removedThrough + 1
        attempt("prune sessions") { try sink.pruneSessions(lastSeenBefore: oldestHeld) }
    }
}
