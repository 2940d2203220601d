import AllegroClient
import AllegroLog
import AllegroMessages
import AllegroPosix

/// What the supervisor tells Timmy, on the relay stream (through a `StreamPublisher`, whose
/// queue holds them in order while the relay is down): a Report for every restart, and alerts
/// keyed by (alert, service): `service_down` while a service is not running, `service_unhealthy`
/// while its probe fails, `service_crash_looping` past the restart intensity, and
/// `supervisor_config_refused` for a reload that failed its check. Everything is logged too.
struct SupervisorReporter: Sendable {
    let publisher: StreamPublisher?
    let log: EventLog
    /// The session of the supervisor's Reports.
    static let session = "allegro.supervisor"

    func alert(_ name: String, subject: String, _ status: AllegroAlert.Status, _ severity: AllegroAlert.Severity,
               summary: String, details: String = "", sinceMillis: Int64) {
        log.log(status == .firing ? .warning : .info, "alert", ["alert": name, "subject": subject, "status": status.rawValue, "summary": summary])
        guard let publisher else { return }
        let cut = String(summary.prefix(1000)).replacingOccurrences(of: "\n", with: " ")
        guard let alert = try? AllegroAlert(alert: name, subject: String(subject.prefix(200)), status: status, severity: severity,
                                            summary: cut, details: String(details.prefix(8000)), sinceMillis: max(sinceMillis, 0))
        else {
            log.log(.error, "alert_not_made", ["alert": name, "subject": subject])
            return
        }
        publisher.publish(kind: AllegroAlert.kind, session: Self.session, payload: alert.json, log: log)
    }

    /// A Report of one restart: why the service stopped and when it goes again.
    func restart(service: String, why: String, ranMillis: Int64, delayMillis: Int, restarts: Int, crashLooping: Bool) {
        let results = "Stopped: \(why) after \(Self.duration(ranMillis)).\nRestart \(restarts) in a row, after \(Self.duration(Int64(delayMillis)))"
            + (crashLooping ? " (crash-looping: restarts continue at the longest wait)." : ".")
        log.log(.warning, "service_restart", ["service": service, "why": why, "ran_ms": String(ranMillis), "delay_ms": String(delayMillis),
                                              "restarts": String(restarts)])
        guard let publisher, let telemetry = try? AllegroReport.Telemetry(executions: 1, successRatePercent: 100, avgLatencyMillis: Int64(delayMillis)),
              let report = try? AllegroReport(task: "Restart of \(service)", status: .inProgress, duration: Self.duration(ranMillis),
                                              results: results, telemetry: telemetry,
                                              nextSteps: crashLooping ? "Timmy decides: the service keeps failing." : "None: the supervisor restarts it.")
        else { return }
        publisher.publish(kind: "allegro.report", session: Self.session, payload: report.json, log: log)
    }

    /// A Report of something done (a failover), complete.
    func report(task: String, results: String) {
        guard let publisher, let telemetry = try? AllegroReport.Telemetry(executions: 1, successRatePercent: 100, avgLatencyMillis: 0),
              let report = try? AllegroReport(task: String(task.prefix(200)), status: .complete, duration: "0 s", results: results,
                                              telemetry: telemetry, nextSteps: "None: Timmy is told.")
        else { return }
        publisher.publish(kind: "allegro.report", session: Self.session, payload: report.json, log: log)
    }

    static func duration(_ millis: Int64) -> String {
        millis < 10_000 ? "\(Double(millis) / 1000) s" : millis < 600_000 ? "\(millis / 1000) s" : "\(millis / 60_000) min"
    }
}
