import AllegroLog
import AllegroMessages
import AllegroPosix
import AllegroRelay
import AllegroStore
import Foundation
import ServiceLifecycle

/// Runs `RelayWatch` every `intervalMillis` on the relay's published status and its disk, puts
/// each alert that changed on the stream (kind `allegro.alert`), keeps the active ones in
/// `DATA/alerts.jsonl` (so one that ended while the relay was down resolves at its next start),
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
        var watch = RelayWatch(settings: settings, restored: restoredAlerts())
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
                publisher.publish(kind: AllegroAlert.kind, payload: alert.json, log: log)
            }
            if !changes.isEmpty { save(Array(watch.active.values)) }
            if let due = nextReport, now >= due {
                nextReport = DailyReportMaker.nextTime(after: due + 1000, second: settings.dailyReportSecond ?? 0)
                let windowStart = now - 86_400_000
                // Starts in the last 24 hours, but the data directory's very first start.
                let starts = ((try? store.events()) ?? []).filter { $0.kind == "relay_started" }
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

    private func save(_ active: [AllegroAlert]) {
        let text = active.map { $0.json + "\n" }.sorted().joined()
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: activeFile), options: .atomic) } catch {
            log.log(.warning, "alerts_file_not_saved", ["file": activeFile, "reason": error.localizedDescription])
        }
    }
}
