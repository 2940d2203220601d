/// What recovery found and did, for the log, the events table, `/status` and `/metrics`.
/// Every record number that no longer has a record in the spill (and is not a skipped number)
/// is counted exactly once: in `lostRecords` when it is at or below the last saved checkpoint
/// (fsync'd, so it was or may have been acknowledged), in `unconfirmedRecords` when it is above
/// it (written in the last moments before a crash; acknowledged only if its fsync returned
/// within the last state-save interval, else the producer resends it).
public struct RecoveryReport: Sendable {
    /// Something recovery set aside, or numbers it found no record for.
    public struct Damage: Sendable, Equatable {
        public enum Kind: String, Sendable {
            /// Bytes after the last good block of a segment, with no good block after them.
            case tornTail = "spill_tail_truncated"
            /// A damaged block (or run of bytes) with good blocks after it.
            case damagedBlock = "spill_block_quarantined"
            /// A segment file with no readable segment header and no readable first block.
            case unreadableSegment = "spill_segment_quarantined"
            /// A segment whose first number another segment already has.
            case duplicateSegment = "spill_segment_duplicate_quarantined"
            /// An entry of the wrong type: a segment name that is a directory or a symbolic
            /// link, or `spill/` itself when it is not a directory (what it held is not counted).
            case wrongType = "spill_entry_set_aside"
            /// Numbers between two good blocks that no file holds (a deleted segment).
            case missing = "spill_records_missing"
        }

        public var kind: Kind
        public var segment: String
        public var offset: Int
        public var length: Int
        /// Records lost here: numbers in the gap this damage leaves, at or below the checkpoint.
        public var lostRecords: UInt64
        /// Numbers in the gap above the checkpoint (see the type's comment).
        public var unconfirmedRecords: UInt64
        /// Where the bytes went, or "" when nothing was moved.
        public var quarantineFile: String
        /// The first relay number this damage may have held: where its gap starts.
        var position: UInt64

        public var torn: Bool { kind == .tornTail }
    }

    /// Something recovery put right without losing a record.
    public struct Repair: Sendable, Equatable {
        public enum Kind: String, Sendable {
            /// A segment whose name did not match its header was renamed.
            case renamedSegment = "spill_segment_renamed"
            /// A segment header was rewritten from the segment's first block.
            case segmentHeader = "spill_segment_header_repaired"
            /// A block header that disagreed with its (checksummed) records was rewritten.
            case blockHeader = "spill_block_header_repaired"
        }

        public var kind: Kind
        public var detail: String
    }

    public var segments: [SegmentInfo] = []
    /// Every segment kept but the newest: sealed and now verified (the caller records them, so
    /// the next start need not read them).
    public var sealed: [SegmentInfo] = []
    /// Sealed segments taken from their record without being read.
    public var unreadSegments = 0
    public var damage: [Damage] = []
    public var repairs: [Repair] = []
    /// Highest producer sequence (and its relay sequence) per producer id, from the blocks
    /// recovery was asked to read.
    public var producerMarks = ProducerMarks()

    public var lastSequence: UInt64 { segments.last { !$0.isEmpty }?.lastSequence ?? 0 }
    /// The ranges of numbers counted as lost or unconfirmed: stored by the caller and passed
    /// back as explained next time, so a gap is counted once, not at every start.
    public var countedGaps: [ClosedRange<UInt64>] = []

    public var lostRecords: UInt64 { damage.reduce(0) { $0 + $1.lostRecords } }
    public var unconfirmedRecords: UInt64 { damage.reduce(0) { $0 + $1.unconfirmedRecords } }
}
