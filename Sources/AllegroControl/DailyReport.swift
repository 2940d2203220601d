import AllegroMessages
import AllegroRelay

/// Counts of one Prometheus histogram, read from the text exposition (cumulative buckets).
struct HistogramCounts: Sendable, Equatable {
    var bounds: [Double] = []
    var cumulative: [UInt64] = []
    var sum = 0.0
    var count: UInt64 = 0

    /// The histogram `name` in `exposition`, summed over any labels; empty when absent.
    init(_ name: String, in exposition: String) {
        var buckets: [Double: UInt64] = [:]
        for line in exposition.split(separator: "\n") where line.hasPrefix(name) {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, let value = Double(parts[parts.count - 1]) else { continue }
            let metric = parts[0]
            if metric.hasPrefix(name + "_bucket"), let range = metric.range(of: "le=\"") {
                let rest = metric[range.upperBound...]
                guard let end = rest.firstIndex(of: "\"") else { continue }
                let bound = rest[..<end] == "+Inf" ? Double.infinity : Double(rest[..<end]) ?? .nan
                guard !bound.isNaN else { continue }
                buckets[bound, default: 0] += UInt64(max(value, 0))
            } else if metric == name + "_sum" || metric.hasPrefix(name + "_sum{") {
                sum += value
            } else if metric == name + "_count" || metric.hasPrefix(name + "_count{") {
                count += UInt64(max(value, 0))
            }
        }
        bounds = buckets.keys.sorted()
        cumulative = bounds.map { buckets[$0] ?? 0 }
    }

    init() {}

    /// What was observed since `earlier` (same buckets; a restart resets both to zero).
    func since(_ earlier: HistogramCounts) -> HistogramCounts {
        guard earlier.bounds == bounds, earlier.count <= count else { return self }
        var delta = self
        delta.cumulative = zip(cumulative, earlier.cumulative).map { $0 >= $1 ? $0 - $1 : 0 }
        delta.sum = max(sum - earlier.sum, 0)
        delta.count = count - earlier.count
        return delta
    }

    /// The upper bound of the bucket holding quantile `q` (nil with no observations).
    func quantileUpperBound(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = UInt64((Double(count) * q).rounded(.up))
        return zip(bounds, cumulative).first { $0.1 >= max(rank, 1) }?.0
    }
}

/// The daily report (an Allegro Report, kind `allegro.report`, session `allegro.daily`): what
/// the relay did since the previous one. Sent even when all is well, so that its absence is a
/// signal of its own. A value type apart from I/O: the service hands it the facts.
public struct DailyReportMaker: Sendable {
    /// The session daily reports travel under, so the notifier can tell them from others.
    public static let session = "allegro.daily"

    private var recordsIn: UInt64 = 0
    private var dropped: UInt64 = 0
    private var errors: [String: UInt64] = [:]
    private var dwell = HistogramCounts()
    private var windowStartMillis: Int64

    /// `startMillis`: when the relay started (the first report covers the time since).
    public init(startMillis: Int64) { windowStartMillis = startMillis }

    /// The report for the window ending now, and the start of the next window.
    public mutating func report(status: RelayStatus, exposition: String, restarts: Int, activeAlerts: [AllegroAlert],
                                nowMillis: Int64) -> AllegroReport? {
        let relayed = status.traffic.recordsIn &- min(recordsIn, status.traffic.recordsIn)
        let lost = status.retention.droppedRecords &- min(dropped, status.retention.droppedRecords)
        let currentDwell = HistogramCounts("allegro_dwell_seconds", in: exposition)
        let window = currentDwell.since(dwell)
        var errorCounts: [String] = []
        for (code, count) in status.errors.sorted(by: { $0.key < $1.key }) {
            let fresh = count &- min(errors[code] ?? 0, count)
            if fresh > 0 { errorCounts.append("\(code)=\(fresh)") }
        }
        var lines = ["records relayed: \(relayed)"]
        func millis(_ seconds: Double?) -> String {
            guard let seconds else { return "none observed" }
            return seconds.isInfinite ? "over an hour" : "≤ \(Self.decimal(seconds * 1000)) ms"
        }
        lines.append("delivery lag (accepted to sent to a collector): p50 \(millis(window.quantileUpperBound(0.5))), p99 \(millis(window.quantileUpperBound(0.99)))")
        for collector in status.collectors where collector.durable {
            lines.append("collector \(collector.name): \(collector.connected ? "connected" : "away"), committed \(collector.committed ?? 0), lag \(collector.lagRecords) records")
        }
        let oldest = status.spill.oldestIngestNanos.map { nanos in
            ", oldest record \(RelayWatch.duration(nowMillis - Int64(nanos / 1_000_000))) old"
        } ?? ""
        lines.append("spill: \(status.spill.bytes) bytes in \(status.spill.segments) segments\(oldest)")
        lines.append("records removed by retention before a durable collector committed them: \(lost)")
        lines.append("restarts: \(restarts)")
        lines.append("errors: \(errorCounts.isEmpty ? "none" : errorCounts.joined(separator: ", "))")
        let nextSteps = activeAlerts.isEmpty ? "None: all is well."
            : activeAlerts.map { "Firing: \($0.alert) \($0.subject): \($0.summary)" }.joined(separator: "\n")
        let successTenths = relayed == 0 ? 1000 : Int((Double(relayed - min(lost, relayed)) / Double(relayed) * 1000).rounded(.down))
        let averageMillis = window.count == 0 ? 0 : Int64((window.sum / Double(window.count) * 1000).rounded())
        let relay = status.relayID.isEmpty ? "the relay" : status.relayID
        let report: AllegroReport
        do {
            let telemetry = try AllegroReport.Telemetry(executions: Int64(clamping: relayed), successRatePercent: Double(successTenths) / 10,
                                                        avgLatencyMillis: averageMillis)
            report = try AllegroReport(task: "Daily report of \(relay)", status: .complete,
                                       duration: RelayWatch.duration(nowMillis - windowStartMillis),
                                       results: lines.joined(separator: "\n"), artifacts: [], telemetry: telemetry,
                                       nextSteps: nextSteps)
        } catch {
            // Every part is built here from numbers and checked names; a summary an alert
            // carries could only fail the heading rule, and then the report says less.
            return nil
        }
        recordsIn = status.traffic.recordsIn
        dropped = status.retention.droppedRecords
        errors = status.errors
        dwell = currentDwell
        windowStartMillis = nowMillis
        return report
    }

    static func decimal(_ value: Double) -> String {
        value >= 10 ? String(Int(value.rounded())) : String(Double(Int((value * 100).rounded())) / 100)
    }

    /// The first time at or after `nowMillis` that is `second` seconds after a UTC midnight.
    public static func nextTime(after nowMillis: Int64, second: Int) -> Int64 {
        let day: Int64 = 86_400_000
        let midnight = nowMillis - ((nowMillis % day) + day) % day
        let candidate = midnight + Int64(second) * 1000
        return candidate >= nowMillis ? candidate : candidate + day
    }
}
