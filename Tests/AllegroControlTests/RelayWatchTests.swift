import AllegroControl
import AllegroMessages
import AllegroRelay
import Testing

/// The relay's alert rules, alone: each condition fires once when it begins and resolves when it
/// ends, early warnings come before the loss they warn of, and the daily report's figures are
/// those of its window.
@Suite struct RelayWatchTests {
    var settings: RelayWatchSettings {
        var settings = RelayWatchSettings()
        settings.collectorAwayMillis = 60_000
        settings.retentionWarningMillis = 3_600_000
        settings.recordsLostHoldMillis = 600_000
        return settings
    }

    func status(connected: Bool = true, lagRecords: UInt64 = 0, lagSeconds: Double = 0, dropped: UInt64 = 0,
                failure: String? = nil) -> RelayStatus {
        var status = RelayStatus()
        status.relayID = "relay-test"
        status.collectors = [.init(name: "timmy", durable: true, connected: connected, peer: nil, cursor: nil, committed: 10,
                                   lagRecords: lagRecords, lagSeconds: lagSeconds)]
        status.retention.droppedRecords = dropped
        status.spill.failure = failure
        return status
    }

    func facts(_ status: RelayStatus, at millis: Int64, diskFree: Double? = 50, maxAgeMillis: Int = 7 * 86_400_000) -> WatchFacts {
        WatchFacts(status: status, diskFreePercent: diskFree, diskFreeBytes: 1 << 30, nowMillis: millis,
                   retentionMaxAgeMillis: maxAgeMillis, retentionMaxBytes: 0)
    }

    @Test func aCollectorAwayLongerThanTheThresholdFiresOnceAndResolvesWhenItComesBack() {
        var watch = RelayWatch(settings: settings)
        #expect(watch.evaluate(facts(status(connected: false), at: 0)).isEmpty)
        #expect(watch.evaluate(facts(status(connected: false), at: 59_999)).isEmpty)
        let fired = watch.evaluate(facts(status(connected: false), at: 60_000))
        #expect(fired.map(\.alert) == ["collector_away"] && fired.first?.subject == "timmy" && fired.first?.status == .firing)
        #expect(fired.first?.sinceMillis == 0)
        #expect(watch.evaluate(facts(status(connected: false), at: 120_000)).isEmpty, "a condition that goes on raises nothing new")
        let resolved = watch.evaluate(facts(status(connected: true), at: 130_000))
        #expect(resolved.map(\.status) == [.resolved] && resolved.first?.alert == "collector_away")
        #expect(watch.active.isEmpty)
    }

    @Test func theRetentionWarningComesHoursBeforeRetentionWouldRemoveUncommittedRecords() {
        var watch = RelayWatch(settings: settings)
        let day = 86_400_000
        // Oldest uncommitted record 6 days 22 h old: retention (7 days) removes it in 2 h, past the 1 h warning.
        #expect(watch.evaluate(facts(status(lagRecords: 5, lagSeconds: Double(day * 7 - 7_200_000) / 1000), at: 1, maxAgeMillis: 7 * day)).isEmpty)
        let warned = watch.evaluate(facts(status(lagRecords: 5, lagSeconds: Double(day * 7 - 3_000_000) / 1000), at: 2, maxAgeMillis: 7 * day))
        #expect(warned.map(\.alert) == ["retention_warning"] && warned.first?.severity == .warning)
        #expect(warned.first?.summary.contains("5 records timmy has not committed") == true)
        let caughtUp = watch.evaluate(facts(status(lagRecords: 0), at: 3, maxAgeMillis: 7 * day))
        #expect(caughtUp.map(\.status) == [.resolved])
    }

    @Test func recordsLostFiresWhenRetentionDropsAndResolvesAfterTheHold() {
        var watch = RelayWatch(settings: settings)
        #expect(watch.evaluate(facts(status(), at: 0)).isEmpty)
        let lost = watch.evaluate(facts(status(dropped: 7), at: 1000))
        #expect(lost.map(\.alert) == ["records_lost"] && lost.first?.severity == .critical && lost.first?.subject == "relay-test")
        #expect(watch.evaluate(facts(status(dropped: 7), at: 500_000)).isEmpty)
        #expect(watch.evaluate(facts(status(dropped: 7), at: 601_000)).map(\.status) == [.resolved])
    }

    @Test func aSpillThatCannotWriteAndAFillingDiskFireAndResolve() {
        var watch = RelayWatch(settings: settings)
        let fired = watch.evaluate(facts(status(failure: "EFBIG"), at: 0, diskFree: 4))
        #expect(fired.map(\.alert) == ["disk_filling", "spill_write_failed"])
        #expect(fired.allSatisfy { $0.severity == .critical })
        #expect(watch.evaluate(facts(status(), at: 10, diskFree: 40)).map(\.status) == [.resolved, .resolved])
    }

    @Test func anAlertActiveAtTheLastStopResolvesAtTheFirstEvaluationIfItsConditionEnded() throws {
        let old = try AllegroAlert(alert: "collector_away", subject: "timmy", status: .firing, severity: .warning,
                                   summary: "away", sinceMillis: 5)
        var watch = RelayWatch(settings: settings, restored: [old])
        let changes = watch.evaluate(facts(status(connected: true), at: 100))
        #expect(changes.count == 1 && changes.first?.status == .resolved && changes.first?.sinceMillis == 5)
        var still = RelayWatch(settings: settings, restored: [old])
        #expect(still.evaluate(facts(status(connected: false), at: 100_000)).isEmpty, "still away: already told")
    }

    @Test func theDailyReportCountsItsOwnWindow() throws {
        var maker = DailyReportMaker(startMillis: 0)
        var first = status(connected: false, lagRecords: 3)
        first.traffic.recordsIn = 1000
        first.errors = ["AUTH_FAILED": 2]
        let exposition = """
            allegro_dwell_seconds_bucket{le="0.0001"} 90
            allegro_dwell_seconds_bucket{le="0.001"} 99
            allegro_dwell_seconds_bucket{le="+Inf"} 100
            allegro_dwell_seconds_sum 0.05
            allegro_dwell_seconds_count 100
            """
        let made = maker.report(status: first, exposition: exposition, restarts: 1, activeAlerts: [], nowMillis: 86_400_000)
        let report = try #require(made)
        #expect(report.telemetry.executions == 1000)
        #expect(report.task.hasPrefix("Daily report"))
        #expect(report.results.contains("records relayed: 1000"))
        #expect(report.results.contains("p50 ≤ 0.1 ms, p99 ≤ 1.0 ms"))
        #expect(report.results.contains("collector timmy: away, committed 10, lag 3 records"))
        #expect(report.results.contains("restarts: 1"))
        #expect(report.results.contains("errors: AUTH_FAILED=2"))
        #expect(report.telemetry.avgLatencyMillis == 1)
        var second = first
        second.traffic.recordsIn = 1500
        let madeNext = maker.report(status: second, exposition: exposition, restarts: 0, activeAlerts: [], nowMillis: 2 * 86_400_000)
        let next = try #require(madeNext)
        #expect(next.telemetry.executions == 500 && next.results.contains("errors: none") && next.results.contains("none observed"))
    }

    @Test func theReportTimeIsTheNextOccurrenceOfItsTimeOfDay() {
        #expect(RelayWatchSettings.parseTimeOfDay("08:00") == .some(28_800))
        #expect(RelayWatchSettings.parseTimeOfDay("23:59:59") == .some(86_399))
        #expect(RelayWatchSettings.parseTimeOfDay("off") == .some(nil))
        #expect(RelayWatchSettings.parseTimeOfDay("24:00") == nil && RelayWatchSettings.parseTimeOfDay("8:00") == nil)
        let day: Int64 = 86_400_000
        #expect(DailyReportMaker.nextTime(after: 3 * day + 1000, second: 3600) == 3 * day + 3_600_000)
        #expect(DailyReportMaker.nextTime(after: 3 * day + 3_600_001, second: 3600) == 4 * day + 3_600_000)
    }

    @Test func bySizeOnlyABacklogThatFillsMostOfTheLimitWarnsNotACollectorOneRecordBehind() {
        var watch = RelayWatch(settings: settings)
        func sized(lag: UInt64) -> WatchFacts {
            var status = status(lagRecords: lag, lagSeconds: 1)
            status.nextSequence = 1_001
            status.spill.oldestSequence = 1
            status.spill.bytes = 950
            return WatchFacts(status: status, diskFreePercent: 50, diskFreeBytes: 1 << 30, nowMillis: 0,
                              retentionMaxAgeMillis: 7 * 86_400_000, retentionMaxBytes: 1000)
        }
        #expect(watch.evaluate(sized(lag: 1)).isEmpty, "a spill near its limit is the steady state")
        let warned = watch.evaluate(sized(lag: 900))
        #expect(warned.map(\.alert) == ["retention_warning"] && warned.first?.summary.contains("85%") == true)
    }

    @Test func aRecordsLostActiveAtTheLastStopHoldsItsTimeAgainAfterARestart() throws {
        let old = try AllegroAlert(alert: "records_lost", subject: "relay-test", status: .firing, severity: .critical,
                                   summary: "lost", sinceMillis: 5)
        var watch = RelayWatch(settings: settings, restored: [old])
        #expect(watch.evaluate(facts(status(), at: 1_000)).isEmpty)
        #expect(watch.evaluate(facts(status(), at: 600_999)).isEmpty)
        let resolved = watch.evaluate(facts(status(), at: 601_000))
        #expect(resolved.map(\.status) == [.resolved] && resolved.first?.sinceMillis == 5)
    }

    @Test func aCollectorNameWithAControlCharacterIsAlertedOnShownPrintable() {
        var watch = RelayWatch(settings: settings)
        var odd = status(connected: false)
        odd.collectors[0].name = "tim\nmy"
        _ = watch.evaluate(facts(odd, at: 0))
        let fired = watch.evaluate(facts(odd, at: 60_000))
        #expect(fired.first?.subject == "tim?my")
        #expect(watch.takeRefused().isEmpty)
    }
}
