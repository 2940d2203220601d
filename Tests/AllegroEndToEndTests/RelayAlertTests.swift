import AllegroTestSupport
import Foundation
import Testing

/// The relay's own alerts on the real binary: raised on its own stream when a condition begins,
/// resolved when it ends, read back by ordinary collectors.
@Suite(.serialized) struct RelayAlertTests {
    /// The alerts in a tail's JSON lines output, as (alert, subject, status), in stream order.
    static func alerts(in output: String) -> [(alert: String, subject: String, status: String)] {
        output.split(separator: "\n").compactMap { line in
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  record["kind"] as? String == "allegro.alert", let payload = record["payload"] as? String,
                  let alert = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any],
                  let name = alert["alert"] as? String, let subject = alert["subject"] as? String,
                  let status = alert["status"] as? String else { return nil }
            return (name, subject, status)
        }
    }

    static func waitFor(_ running: AllegroBinary.Running, seconds: Double, _ done: (String) -> Bool) -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var text = ""
        repeat {
            text = (try? String(contentsOf: running.outURL, encoding: .utf8)) ?? ""
            if done(text) { break }
            usleep(50_000)
        } while Date() < deadline
        return text
    }

    @Test func aSpillThatCannotWriteRaisesAnAlertThatReachesCollectorsInOrderOnceItWritesAgain() async throws {
        let relay = try RelayProcess(["--durable", "timmy", "--set", "alert_interval_ms=100",
                                      "--set", "max_frame_bytes=65536", "--set", "ring_bytes=1048576"] + TestTraffic.growingSpill)
        let live = try AllegroBinary.start(["tail", "--relay", relay.address, "--from", "latest", "--live", "--format", "jsonl"])
        try TestTraffic.push(relay, (0 ..< 1000).map { "before-\($0)" }, producer: "alerts")

        try TestTraffic.freezeSpill(of: relay)
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let blocked = try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "alerts-2"],
                                              stdin: try StreamingTests.lines("during", 20_000, in: scratch))
        // While the spill cannot write, ingest is paused: the alert is in the relay's log (and
        // /health answers 503; the bridge's notifier watches that), and waits to be spilled.
        let deadline = Date().addingTimeInterval(30)
        while !relay.log.contains("event=alert_firing alert=spill_write_failed") && Date() < deadline { usleep(50_000) }
        #expect(relay.log.contains("event=alert_firing alert=spill_write_failed"), "\(relay.log)")

        try TestTraffic.thawSpill(of: relay)
        let both = Self.alerts(in: Self.waitFor(live, seconds: 30) { Self.alerts(in: $0).count >= 2 })
        #expect(both.map(\.status) == ["firing", "resolved"] && both.allSatisfy { $0.alert == "spill_write_failed" },
                "raised, then resolved once the spill writes again: \(both)")
        #expect(both.first?.subject.hasPrefix("relay-") == true)
        let pushed = try blocked.wait(timeout: 60)
        #expect(pushed.status == 0 && pushed.stderr.contains("acked 20000"), "\(pushed.stderr)")

        // Timmy's durable collector gets both too, in order with the telemetry.
        let durable = try AllegroBinary.run(["tail", "--relay", relay.address, "--collector", "timmy", "--from", "earliest",
                                             "--count", "21002", "--format", "jsonl"], timeout: 60)
        #expect(durable.status == 0, "\(durable.stderr)")
        let seen = Self.alerts(in: durable.stdout)
        #expect(seen.map(\.status) == ["firing", "resolved"] && seen.allSatisfy { $0.alert == "spill_write_failed" })
    }

    @Test func anAlertActiveWhenTheRelayStoppedIsNotRaisedAgainAfterARestartAndResolvesWhenItsConditionEnds() async throws {
        let first = try RelayProcess(["--durable", "timmy", "--set", "alert_interval_ms=100", "--set", "alert_collector_away_ms=300"])
        let data = first.dataDirectory
        let away = try AllegroBinary.run(["tail", "--relay", first.address, "--from", "earliest", "--count", "1", "--format", "jsonl"],
                                         timeout: 30)
        #expect(Self.alerts(in: away.stdout).map(\.alert) == ["collector_away"] && Self.alerts(in: away.stdout).first?.subject == "timmy")
        let saved = try String(contentsOf: data.appendingPathComponent("alerts.jsonl"), encoding: .utf8)
        #expect(saved.contains("\"collector_away\""), "the active alert is kept: \(saved)")
        _ = first.stop()

        // The restarted relay knows the alert is active (it raises no second one) and resolves
        // it once Timmy's collector is back.
        let second = try RelayProcess(["--durable", "timmy", "--set", "alert_interval_ms=100", "--set", "alert_collector_away_ms=300"],
                                      listen: first.address, dataDirectory: data)
        let timmy = try AllegroBinary.start(["tail", "--relay", second.address, "--collector", "timmy", "--from", "earliest",
                                             "--format", "jsonl"])
        let told = Self.alerts(in: Self.waitFor(timmy, seconds: 30) { Self.alerts(in: $0).count >= 2 })
        #expect(told.map(\.status) == ["firing", "resolved"] && told.allSatisfy { $0.alert == "collector_away" && $0.subject == "timmy" })
        let cleared = Self.waitForFile(data.appendingPathComponent("alerts.jsonl")) { !$0.contains("collector_away") }
        #expect(!cleared.contains("collector_away"), "no alert is left active: \(cleared)")
    }

    static func waitForFile(_ url: URL, seconds: Double = 10, _ done: (String) -> Bool) -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var text = ""
        repeat {
            text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
            if done(text) { break }
            usleep(50_000)
        } while Date() < deadline
        return text
    }
}
