import AllegroRelay
import Metrics
import Prometheus

/// The Prometheus side of the relay's metrics: a registry behind swift-metrics (bootstrapped
/// once per process, before the relay is created), the state gauges set from `RelayStatus` at
/// each scrape, and the text exposition with a HELP line for every family.
public final class MetricsExport: Sendable {
    private let registry: PrometheusCollectorRegistry

    /// Bootstraps `MetricsSystem` with a Prometheus factory. Call once, before `RelayServer`.
    public static func bootstrap() -> MetricsExport {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = latencyBuckets
        MetricsSystem.bootstrap(factory)
        return MetricsExport(registry: registry)
    }

    private init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    /// From 50 µs (a live delivery) to an hour (catch-up after an outage).
    static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        .seconds(300), .seconds(3600),
    ]

    static let gaugeHelp: [String: String] = [
        "allegro_connections": "Open connections by role (handshake: HELLO not yet received).",
        "allegro_ring_records": "Records held in the in-memory ring.",
        "allegro_ring_bytes": "Bytes of record memory in use in the ring.",
        "allegro_ring_capacity_bytes": "Bytes of record memory the ring has.",
        "allegro_ring_capacity_records": "Records the ring can index.",
        "allegro_spill_bytes": "Bytes of spill segments on disk.",
        "allegro_spill_segments": "Spill segment files on disk.",
        "allegro_spill_healthy": "1 while the spill can write, 0 while writes fail (acks and ingest pause).",
        "allegro_acks_outstanding": "Records accepted but not yet fsync'd in the spill, so not yet acknowledged.",
        "allegro_next_sequence": "The next relay sequence to be assigned.",
        "allegro_recovery_lost_records": "Records start-up recovery found gone from the spill at or below the last fsync'd checkpoint.",
        "allegro_recovery_unconfirmed_records": "Numbers start-up recovery found gone past that checkpoint (perhaps never acknowledged).",
        "allegro_spill_damaged_on_read_records": "Records found damaged when a replay read a sealed segment start-up had not read again.",
        "allegro_recovery_set_aside": "Spill entries and byte ranges start-up recovery moved to quarantine.",
        "allegro_recovery_state_rebuilt": "1 when state.sqlite could not be read at start and was rebuilt from the spill.",
        "allegro_collector_connected": "1 while a durable collector has a subscribed connection.",
        "allegro_collector_lag_records": "Records a durable collector has not yet committed.",
        "allegro_collector_lag_seconds": "Age of the oldest record a durable collector has not yet committed.",
    ]

    /// Sets the state gauges from `status` and renders every metric in the text format.
    public func scrape(_ status: RelayStatus?) -> String {
        if let status { setGauges(status) }
        return Self.withHelp(registry.emitToString(), help: RelayMetrics.help.merging(Self.gaugeHelp) { a, _ in a })
    }

    /// Every metric in the text format, as recorded (no gauges set, no help added).
    public func exposition() -> String { registry.emitToString() }

    private func setGauges(_ status: RelayStatus) {
        Gauge(label: "allegro_connections", dimensions: [("role", "producer")]).record(status.connections.producers)
        Gauge(label: "allegro_connections", dimensions: [("role", "collector")]).record(status.connections.collectors)
        Gauge(label: "allegro_connections", dimensions: [("role", "handshake")]).record(status.connections.handshaking)
        Gauge(label: "allegro_ring_records").record(status.ring.records)
        Gauge(label: "allegro_ring_bytes").record(status.ring.bytes)
        Gauge(label: "allegro_ring_capacity_bytes").record(status.ring.byteCapacity)
        Gauge(label: "allegro_ring_capacity_records").record(status.ring.recordCapacity)
        Gauge(label: "allegro_spill_bytes").record(status.spill.bytes)
        Gauge(label: "allegro_spill_segments").record(status.spill.segments)
        Gauge(label: "allegro_spill_healthy").record(status.spill.failure == nil ? 1 : 0)
        Gauge(label: "allegro_acks_outstanding").record(status.acksOutstanding)
        Gauge(label: "allegro_next_sequence").record(status.nextSequence)
        Gauge(label: "allegro_recovery_lost_records").record(status.recovery.lostRecords)
        Gauge(label: "allegro_recovery_unconfirmed_records").record(status.recovery.unconfirmedRecords)
        Gauge(label: "allegro_recovery_set_aside").record(status.recovery.setAside)
        Gauge(label: "allegro_spill_damaged_on_read_records").record(status.recovery.lostOnRead)
        Gauge(label: "allegro_recovery_state_rebuilt").record(status.recovery.stateRebuilt ? 1 : 0)
        for collector in status.collectors where collector.durable {
            let dimensions = [("collector", collector.name)]
            Gauge(label: "allegro_collector_connected", dimensions: dimensions).record(collector.connected ? 1 : 0)
            Gauge(label: "allegro_collector_lag_records", dimensions: dimensions).record(collector.lagRecords)
            Gauge(label: "allegro_collector_lag_seconds", dimensions: dimensions).record(collector.lagSeconds)
        }
    }

    /// Adds `# HELP name text` before each family's `# TYPE` line (swift-metrics has no help
    /// text, and `promtool check metrics` asks for it).
    static func withHelp(_ exposition: String, help: [String: String]) -> String {
        var out = ""
        out.reserveCapacity(exposition.utf8.count + help.count * 80)
        var previous: Substring = ""
        for line in exposition.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), !previous.hasPrefix("# HELP ") {
                let parts = line.split(separator: " ")
                if parts.count >= 3, let text = help[String(parts[2])] {
                    out += "# HELP \(parts[2]) \(text)\n"
                }
            }
            out += line
            out += "\n"
            previous = line
        }
        if out.hasSuffix("\n\n") { out.removeLast() }
        return out
    }
}
