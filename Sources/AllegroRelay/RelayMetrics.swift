import AllegroSpill
import AllegroWire
import Metrics

/// The relay's metrics, recorded through swift-metrics (the process picks the backend; the
/// `allegro` binary exports them to Prometheus). Every record is counted, but recorded once
/// per batch: one PUBLISH, one collector fill, one spill block, one replay chunk. The lag
/// histograms sample one record per batch (the first of a delivery, the last of a PUBLISH), and
/// at most one batch a millisecond each (`SampleClock`): at 10k single-record batches a second,
/// one observation per batch was a quarter of the I/O thread's instructions per record
/// (BENCHMARKS.md, "Zeros ahead, a second client, instructions"). Gauges that describe state
/// (ring occupancy, connections, collector lag) are set from `RelayStatus` when scraped.
///
/// `MetricsSystem` must be bootstrapped before the relay is created; without it these are no-ops.
public final class RelayMetrics: Sendable {
    /// Names and help texts of every metric recorded here, for exporters that print help.
    public static let help: [String: String] = SpillMetrics.help.merging([
        "allegro_records_in_total": "Records accepted from producers (resent duplicates excluded).",
        "allegro_record_bytes_in_total": "Payload bytes of the records accepted from producers.",
        "allegro_records_duplicate_total": "Resent records dropped as duplicates of records already accepted.",
        "allegro_records_out_total": "Records delivered to collectors (each collector counts).",
        "allegro_record_bytes_out_total": "Payload bytes of the records delivered to collectors.",
        "allegro_ingest_lag_seconds": "From a record's event time (producer clock) to the relay accepting it; one record per PUBLISH, at most one a millisecond.",
        "allegro_dwell_seconds": "From the relay accepting a record to handing it to a collector's connection; one record per delivery pass, at most one a millisecond.",
        "allegro_protocol_errors_total": "ERROR frames the relay sent, by code; each ended a connection.",
    ]) { spill, _ in spill }

    let recordsIn = Counter(label: "allegro_records_in_total")
    let bytesIn = Counter(label: "allegro_record_bytes_in_total")
    let duplicates = Counter(label: "allegro_records_duplicate_total")
    let recordsOut = Counter(label: "allegro_records_out_total")
    let bytesOut = Counter(label: "allegro_record_bytes_out_total")
    let ingestLag = Timer(label: "allegro_ingest_lag_seconds")
    let dwell = Timer(label: "allegro_dwell_seconds")
    /// The durability pipeline's share.
    public let spill = SpillMetrics()
    private let errors: [Counter]

    public init() {
        errors = ErrorCode.allCases.map { Counter(label: "allegro_protocol_errors_total", dimensions: [("code", $0.name)]) }
    }

    func protocolError(_ code: ErrorCode) {
        if let index = ErrorCode.allCases.firstIndex(of: code) { errors[index].increment() }
    }

    static func observe(_ timer: Timer, from start: UInt64, to end: UInt64) {
        SpillMetrics.observe(timer, from: start, to: end)
    }
}

/// Lets a histogram take at most one observation per interval; used by one thread. A clock
/// that steps back by more than the interval starts it again rather than silencing it.
struct SampleClock {
    let intervalNanos: UInt64
    private var nextNanos: UInt64 = 0

    init(intervalNanos: UInt64) { self.intervalNanos = intervalNanos }

    /// Whether to observe at `nanos` (and if so, not again within the interval).
    mutating func take(at nanos: UInt64) -> Bool {
        // Back by more than an interval from the last observation (`nextNanos - intervalNanos`).
        guard nanos >= nextNanos || nextNanos - nanos > 2 * intervalNanos else { return false }
        nextNanos = nanos &+ intervalNanos
        return true
    }
}
