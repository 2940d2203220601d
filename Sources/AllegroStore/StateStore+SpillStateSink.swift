import AllegroSpill

/// The relay's spill thread keeps its state here.
extension StateStore: SpillStateSink {
    public func recordSealed(_ segments: [SegmentInfo]) throws {
        try recordSealed(segments, replacingAll: false)
    }

    public func finishCleanStop(lastAssigned: UInt64) throws {
        try reserve(through: lastAssigned)
        // After a clean stop, state.sqlite alone is the whole state (a copy of it is a backup;
        // damage to it is what start-up checks).
        try checkpointLog()
    }
}
