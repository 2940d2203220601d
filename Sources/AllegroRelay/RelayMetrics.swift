import AllegroWire
import Metrics

/// The relay's metrics, recorded through swift-metrics (the process picks the backend; the
/// `allegro` binary exports them to Prometheus). Every record is counted, but recorded once
/// per batch: one PUBLISH, one collector fill, one spill block, one replay chunk. The lag
/// histograms sample one record per batch (the first of a delivery, the last of a PUBLISH),
/// so they cost nothing per record. Gauges that describe state (ring occupancy, connections,
/// collector lag) are set from `RelayStatus` when scraped.
///
/// `MetricsSystem` must be bootstrapped before the relay is created; without it these are no-ops.
public final class RelayMetrics: Sendable {
    /// Names and help texts of every metric recorded here, for exporters that print help.
    public static let help: [String: String] = [
        "allegro_records_in_total": "Records accepted from producers (resent duplicates excluded).",
        "allegro_record_bytes_in_total": "Payload bytes of the records accepted from producers.",
        "allegro_records_duplicate_total": "Resent records dropped as duplicates of records already accepted.",
        "allegro_records_out_total": "Records delivered to collectors (each collector counts).",
        "allegro_record_bytes_out_total": "Payload bytes of the records delivered to collectors.",
        "allegro_ingest_lag_seconds": "From a record's event time (producer clock) to the relay accepting it; one record per PUBLISH.",
        "allegro_dwell_seconds": "From the relay accepting a record to handing it to a collector's connection; one record per delivery pass.",
        "allegro_durable_lag_seconds": "From the relay accepting a record to its spill block being fsync'd (when it can be acked); oldest record per group commit.",
        "allegro_spill_fsync_seconds": "Time of one spill fsync (group commit).",
        "allegro_spill_written_records_total": "Records written to the spill.",
        "allegro_spill_written_bytes_total": "Compressed bytes written to the spill, block headers included.",
        "allegro_spill_replayed_records_total": "Records read back from the spill for collectors catching up.",
        "allegro_spill_replayed_bytes_total": "Uncompressed bytes of records read back from the spill.",
        "allegro_retention_dropped_records_total": "Records removed by retention before every durable collector had committed them.",
        "allegro_retention_removed_segments_total": "Spill segments removed by retention (age or size).",
        "allegro_protocol_errors_total": "ERROR frames the relay sent, by code; each ended a connection.",
    ]

    let recordsIn = Counter(label: "allegro_records_in_total")
    let bytesIn = Counter(label: "allegro_record_bytes_in_total")
    let duplicates = Counter(label: "allegro_records_duplicate_total")
    let recordsOut = Counter(label: "allegro_records_out_total")
    let bytesOut = Counter(label: "allegro_record_bytes_out_total")
    let ingestLag = Timer(label: "allegro_ingest_lag_seconds")
    let dwell = Timer(label: "allegro_dwell_seconds")
    let durableLag = Timer(label: "allegro_durable_lag_seconds")
    let fsyncTime = Timer(label: "allegro_spill_fsync_seconds")
    let spillRecords = Counter(label: "allegro_spill_written_records_total")
    let spillBytes = Counter(label: "allegro_spill_written_bytes_total")
    let replayRecords = Counter(label: "allegro_spill_replayed_records_total")
    let replayBytes = Counter(label: "allegro_spill_replayed_bytes_total")
    let retentionDropped = Counter(label: "allegro_retention_dropped_records_total")
    let retentionSegments = Counter(label: "allegro_retention_removed_segments_total")
    private let errors: [Counter]

    public init() {
        errors = ErrorCode.allCases.map { Counter(label: "allegro_protocol_errors_total", dimensions: [("code", $0.name)]) }
    }

    func protocolError(_ code: ErrorCode) {
        if let index = ErrorCode.allCases.firstIndex(of: code) { errors[index].increment() }
    }

    /// Records `nanos` if it is a plausible duration (a producer clock ahead of ours gives none).
    static func observe(_ timer: Timer, from start: UInt64, to end: UInt64) {
        guard start != 0, end >= start else { return }
        timer.recordNanoseconds(Int64(clamping: end - start))
    }
}
