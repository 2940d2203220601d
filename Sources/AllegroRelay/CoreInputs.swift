import AllegroPosix
import AllegroSpill
import AllegroStore

/// What the relay core sees of the durability pipeline: how far records are fsync'd, where a
/// commit goes and what is saved, and forced-loss accounting. `SpillPipeline` in the relay;
/// tests step a fake by hand. Every call comes from the I/O thread.
protocol SpillProgress: AnyObject {
    /// Every record at or below this is in the spill and fsync'd (safe to acknowledge).
    var safeThrough: UInt64 { get }
    /// The oldest relay sequence the spill holds (nil: none).
    var oldestSpilledSequence: UInt64? { get }
    /// The I/O thread appended records to the ring.
    func recordsAppended()
    /// A durable collector's new committed cursor, to be saved.
    func committed(_ name: String, through: UInt64)
    /// A durable collector's cursor as saved (what COMMITTED may answer).
    func savedCursor(_ name: String) -> UInt64
    /// Counts what of `range` no count covers yet as forced loss; returns how many.
    func countForcedLoss(_ range: ClosedRange<UInt64>) -> UInt64
    /// The spill as it stands, for `/status`.
    func snapshot() -> SpillSnapshot
}

/// The spill's part of `/status`.
struct SpillSnapshot {
    var segments: [SegmentInfo] = []
    var failure: String?
    var retentionDropped: UInt64 = 0
    var retentionRemovedSegments: UInt64 = 0
    var damagedOnRead: UInt64 = 0
}

/// Where relay sequences are reserved ahead of use (the state database in the relay): a number
/// is handed out only once a reservation covering it is durable.
protocol SequenceReservation: AnyObject {
    func reserve(through: UInt64) throws
}

/// Where the core starts: what recovery found and the state database held.
struct CoreStart {
    /// The first relay sequence this run assigns.
    var firstSequence: UInt64
    /// Relay sequences reserved through this already (the next reservation starts after it).
    var reservedThrough: UInt64
    var cursors: [String: UInt64] = [:]
    var marks: [ProducerMark] = []
    var skips = SkippedSequences()
    var recovery = RelayStatus.Recovery()
}

/// The two clocks at one moment, read once by whoever calls into the core, so the core itself
/// reads no clock (tests pass any moment they like).
struct Moment {
    /// Wall clock (ingest times, lag metrics), nanoseconds since the epoch.
    var wallNanos: UInt64
    /// Monotonic clock (deadlines, timeouts), nanoseconds.
    var monotonicNanos: UInt64

    static var now: Moment { Moment(wallNanos: Clock.wallNanos, monotonicNanos: Clock.monotonicNanos) }
}

extension SpillPipeline: SpillProgress {
    var safeThrough: UInt64 { durableThrough.load(ordering: .acquiring) }
    var oldestSpilledSequence: UInt64? { catalog.oldestSequence }

    func snapshot() -> SpillSnapshot {
        SpillSnapshot(segments: catalog.snapshot(), failure: failure,
                      retentionDropped: retentionDropped.load(ordering: .relaxed),
                      retentionRemovedSegments: retentionRemovedSegments.load(ordering: .relaxed),
                      damagedOnRead: damagedOnRead.load(ordering: .relaxed))
    }
}

extension StateStore: SequenceReservation {}
