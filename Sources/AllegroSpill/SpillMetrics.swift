import Metrics

/// The durability pipeline's metrics, through swift-metrics (the process picks the backend):
/// spill writes and fsyncs, replays, retention. Recorded once per block, group commit, replay
/// chunk or removed segment, never per record.
public final class SpillMetrics: Sendable {
    /// Names and help texts of every metric recorded here, for exporters that print help.
    public static let help: [String: String] = [
        "allegro_durable_lag_seconds": "From the relay accepting a record to its spill block being fsync'd (when it can be acked); oldest record per group commit.",
        "allegro_spill_fsync_seconds": "Time of one spill fsync (group commit).",
        "allegro_spill_written_records_total": "Records written to the spill.",
        "allegro_spill_written_bytes_total": "Compressed bytes written to the spill, block headers included.",
        "allegro_spill_replayed_records_total": "Records read back from the spill for collectors catching up.",
        "allegro_spill_replayed_bytes_total": "Uncompressed bytes of records read back from the spill.",
        "allegro_retention_dropped_records_total": "Records removed by retention before every durable collector had committed them.",
        "allegro_retention_removed_segments_total": "Spill segments removed by retention (age or size).",
    ]

    let durableLag = Timer(label: "allegro_durable_lag_seconds")
    let fsyncTime = Timer(label: "allegro_spill_fsync_seconds")
    let writtenRecords = Counter(label: "allegro_spill_written_records_total")
    let writtenBytes = Counter(label: "allegro_spill_written_bytes_total")
    let replayedRecords = Counter(label: "allegro_spill_replayed_records_total")
    let replayedBytes = Counter(label: "allegro_spill_replayed_bytes_total")
    let retentionDropped = Counter(label: "allegro_retention_dropped_records_total")
    let retentionSegments = Counter(label: "allegro_retention_removed_segments_total")

    public init() {}

    /// Records the time from `start` to `end` if it is a plausible duration (0 means unknown;
    /// a producer clock ahead of ours gives none).
    public static func observe(_ timer: Timer, from start: UInt64, to end: UInt64) {
        guard start != 0, end >= start else { return }
        timer.recordNanoseconds(Int64(clamping: end - start))
    }
}
