/// Where the spill thread keeps the small state that goes with the records it made durable:
/// producer marks, session counts and committed cursors, sealed segments, events and counted
/// gaps, and the reservation at a clean stop. `AllegroStore.StateStore` is the one in the relay;
/// tests give an in-memory one, or one that fails on demand.
///
/// Every call is made from the spill thread alone. A call that throws changes nothing the
/// caller relies on: the spill thread logs it and tries again with the next save.
public protocol SpillStateSink: AnyObject, Sendable {
    /// In one transaction: producer marks and session counts for records through `checkpoint`
    /// (all of them fsync'd; 0 leaves the checkpoint as it is), and committed cursors.
    func save(marks: [ProducerMark], checkpoint: UInt64, cursors: [String: UInt64], sessions: [SessionDelta],
              atNanos: UInt64) throws
    /// Segments sealed since the last call (fsync'd when sealed), for the next start to trust.
    func recordSealed(_ segments: [SegmentInfo]) throws
    /// One line of the events table (damage, retention, forced loss).
    func recordEvent(kind: String, detail: String, records: UInt64, atNanos: UInt64) throws
    /// Numbers counted as lost, so a later start does not count them again.
    func addCountedGaps(_ ranges: [ClosedRange<UInt64>]) throws
    /// Forgets producers not seen since `nanos` (their records have left the spill).
    func pruneProducers(notSeenSince nanos: UInt64) throws
    /// Forgets sessions whose last record is older than `nanos` (retention removed them).
    func pruneSessions(lastSeenBefore nanos: UInt64) throws
    /// A clean stop: every number through `lastAssigned` is in the spill, so the next run
    /// continues right after it; the state is made whole on its own (no log beside it).
    func finishCleanStop(lastAssigned: UInt64) throws
}
