import AllegroClient
import AllegroLog
import AllegroMessages
import AllegroPosix
import AllegroRelay
import AllegroStore
import Foundation
import ServiceLifecycle
import Synchronization

/// Runs `RelayWatch` every `intervalMillis` on the relay's published status and its disk, puts
/// each alert that changed on the stream (kind `allegro.alert`), keeps in `DATA/alerts.jsonl`
/// the alerts active as far as the stream has acknowledged (so one that ended while the relay
/// was down resolves at its next start, and one whose record never got in is raised again),
/// and publishes the daily report at its time of day.
struct RelayWatchService: Service {
    let settings: RelayWatchSettings
    let configuration: RelayConfiguration
    let monitor: RelayMonitor
    let store: StateStore
    let metrics: MetricsExport
    let publisher: StreamPublisher
    let log: EventLog
    let startMillis: Int64

    var activeFile: String { configuration.dataDirectory + "/alerts.jsonl" }

    func run() async throws {
        let restored = restoredAlerts()
        let acknowledged = AcknowledgedAlerts(path: activeFile, alerts: restored, log: log)
        var watch = RelayWatch(settings: settings, restored: restored)
        var reports = DailyReportMaker(startMillis: startMillis)
        var nextReport = settings.dailyReportSecond.map { DailyReportMaker.nextTime(after: Self.nowMillis, second: $0) }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(settings.intervalMillis)) }
            guard !Task.isShuttingDownGracefully, let status = monitor.status else { continue }
            let now = Self.nowMillis
            let disk = diskFree()
            let changes = watch.evaluate(WatchFacts(status: status, diskFreePercent: disk?.percent, diskFreeBytes: disk?.bytes,
                                                    nowMillis: now, retentionMaxAgeMillis: configuration.retentionMaxAgeMillis,
                                                    retentionMaxBytes: configuration.retentionMaxBytes))
            for alert in changes {
                log.log(alert.status == .firing ? .warning : .info, "alert_\(alert.status.rawValue)",
                        ["alert": alert.alert, "subject": alert.subject, "summary": alert.summary])
                publisher.publish(kind: AllegroAlert.kind, payload: alert.json, log: log) { acknowledged.apply(alert) }
            }
            for refused in watch.takeRefused() { log.log(.error, "alert_not_built", ["reason": refused]) }
            if let due = nextReport, now >= due {
                // After a suspend or a clock jump, one report, and the next at its time.
                nextReport = DailyReportMaker.nextTime(after: now + 1000, second: settings.dailyReportSecond ?? 0)
                let windowStart = now - 86_400_000
                // Starts in the last 24 hours, but the data directory's very first start.
                let starts = (try? store.events(kind: "relay_started")) ?? []
                let recent = starts.filter { Int64($0.atNanos / 1_000_000) > windowStart }
                let restarts = recent.count - (recent.first == starts.first && !recent.isEmpty ? 1 : 0)
                let active = watch.active.keys.sorted().compactMap { watch.active[$0] }
                if let report = reports.report(status: status, exposition: metrics.exposition(), restarts: restarts,
                                               activeAlerts: active, nowMillis: now) {
                    log.log(.info, "daily_report", ["records": String(report.telemetry.executions)])
                    publisher.publish(kind: "allegro.report", session: DailyReportMaker.session, payload: report.json, log: log)
                } else {
                    log.log(.error, "daily_report_failed", ["reason": "the report could not be built"])
                }
            }
        }
        publisher.stop()
    }

    static var nowMillis: Int64 { Int64(Clock.wallNanos / 1_000_000) }

    /// Free share and bytes of the data directory's file system (statvfs, through Foundation).
    private func diskFree() -> (percent: Double, bytes: Int64)? {
        guard let attributes = try? FileManager.default.attributesOfFileSystem(forPath: configuration.dataDirectory),
              let free = (attributes[.systemFreeSize] as? NSNumber)?.int64Value,
              let size = (attributes[.systemSize] as? NSNumber)?.int64Value, size > 0
        else { return nil }
        return (Double(free) / Double(size) * 100, free)
    }

    private func restoredAlerts() -> [AllegroAlert] {
        guard let data = FileManager.default.contents(atPath: activeFile) else { return [] }
        var alerts: [AllegroAlert] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            do { alerts.append(try AllegroAlert(json: String(line))) } catch {
                log.log(.warning, "alerts_file_line_skipped", ["file": activeFile, "reason": error.description])
            }
        }
        return alerts
    }
}

/// The alerts active as far as the relay acknowledged their records, saved durably in
/// `DATA/alerts.jsonl` (one alert's JSON a line) each time one is acknowledged; on the
/// publisher's thread.
final class AcknowledgedAlerts: Sendable {
    private let path: String
    private let log: EventLog
    private let active: Mutex<[RelayWatch.Key: AllegroAlert]>

    init(path: String, alerts: [AllegroAlert], log: EventLog) {
        self.path = path
        self.log = log
        active = Mutex(Dictionary(alerts.map { (RelayWatch.Key(alert: $0.alert, subject: $0.subject), $0) }) { a, _ in a })
    }

    func apply(_ alert: AllegroAlert) {
        let text = active.withLock { active -> String in
            active[RelayWatch.Key(alert: alert.alert, subject: alert.subject)] = alert.status == .firing ? alert : nil
            return active.values.map { $0.json + "\n" }.sorted().joined()
        }
        do { try File.replaceDurably(path, with: Array(text.utf8)) } catch {
            log.log(.warning, "alerts_file_not_saved", ["file": path, "reason": "\(error)"])
        }
    }
}
