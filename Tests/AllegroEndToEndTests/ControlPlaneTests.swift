import AllegroTestSupport
import AllegroWire
import Foundation
import Testing

/// The control plane on the real binary: configuration errors, the HTTP control port (health,
/// metrics checked by Prometheus' own promtool, status, sessions), and graceful shutdown.
@Suite(.serialized) struct ControlPlaneTests {
    func push(_ relay: RelayProcess, _ lines: [String], producer: String, session: String? = nil, kind: String? = nil) throws {
        try TestTraffic.push(relay, lines, producer: producer, session: session, kind: kind)
    }

    // MARK: Configuration

    @Test func configCheckPrintsTheEffectiveSettingsWithTokensMasked() throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let file = scratch.appendingPathComponent("allegro.yaml")
        try """
            # a relay for the VPS
            listen: 127.0.0.1:7500
            producer_token: hermes-secret-1234
            durable_collectors: [timmy, archive]
            ring_bytes: 8388608
            log_level: warning
            spill_fsync_interval_ms: 0.25
            """.write(to: file, atomically: false, encoding: .utf8)
        let result = try AllegroBinary.run(["config", "check", file.path, "--set", "max_connections=50"],
                                           environment: ["ALLEGRO_COLLECTOR_TOKEN": "timmy-secret-5678", "ALLEGRO_HEARTBEAT_MS": "2000"],
                                           timeout: 20)
        #expect(result.status == 0, "\(result.stderr)")
        let out = result.stdout
        #expect(!out.contains("hermes-secret-1234") && !out.contains("timmy-secret-5678"), "tokens never printed: \(out)")
        for line in [#"producer_token: "********""#, #"collector_token: "********""#, #"listen: "127.0.0.1:7500""#,
                     #"durable_collectors: ["timmy", "archive"]"#, "ring_bytes: 8388608", "heartbeat_ms: 2000",
                     "max_connections: 50", "log_level: warning", "idle_timeout_ms: 15000", "spill_fsync_interval_ms: 0.25 "] {
            #expect(out.contains(line), "\(line) in:\n\(out)")
        }
        #expect(out.split(separator: "\n").contains { $0.hasPrefix("heartbeat_ms:") && $0.hasSuffix("# environment") })
        #expect(out.split(separator: "\n").contains { $0.hasPrefix("max_connections:") && $0.hasSuffix("# command line") })
        #expect(out.split(separator: "\n").contains { $0.hasPrefix("ring_bytes:") && $0.hasSuffix("# " + file.path) })
        #expect(out.split(separator: "\n").contains { $0.hasPrefix("idle_timeout_ms:") && $0.hasSuffix("# default") })

        // What it printed is itself a configuration the relay accepts, with the same values.
        let printed = scratch.appendingPathComponent("printed.yaml")
        try out.replacingOccurrences(of: #""********""#, with: #""another-token""#).write(to: printed, atomically: false, encoding: .utf8)
        let again = try AllegroBinary.run(["config", "check", printed.path], environment: ["ALLEGRO_HEARTBEAT_MS": "2000"], timeout: 20)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("ring_bytes: 8388608") && again.stdout.contains("max_connections: 50"))
        #expect(again.stdout.contains("spill_fsync_interval_ms: 0.25 "), "\(again.stdout)")
    }

    @Test func theExampleConfigurationIsValidAndSetsEveryKey() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/allegro.yaml")
        let result = try AllegroBinary.run(["config", "check", example.path], timeout: 20)
        #expect(result.status == 0, "\(result.stderr)")
        // Section headers (`bridge:`) carry no value of their own; the services list comes last.
        let parts = result.stdout.components(separatedBy: "\nservices:")
        #expect(parts.count == 2, "the example lists the supervisor's services: \(result.stdout)")
        let settings = parts[0].split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasSuffix(":") }
        #expect(settings.count == 85, "every key but the eight tokens, which are unset: \(result.stdout)")
        #expect(result.stdout.contains("# producer_token: (unset)"))
        for line in settings { #expect(line.hasSuffix("# " + example.path), "every key is in the example: \(line)") }
        let services = parts.last ?? ""
        #expect(services.hasPrefix(" ") && services.contains("# " + example.path))
        #expect(services.contains(#"  - name: "relay""#) && services.contains(#"  - name: "bridge""#), "\(services)")
    }

    @Test func aServicesListOrAFleetInTheFileChangesNoOtherValue() throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        // Plain YAML scalars that a round trip through Swift values would change: off, 0123.
        let settings = "http: off\nrelay_id: 0123\ndaily_report_at: 09:30\n"
        let plain = scratch.appendingPathComponent("plain.yaml")
        let listed = scratch.appendingPathComponent("listed.yaml")
        try settings.write(to: plain, atomically: true, encoding: .utf8)
        try (settings + "services:\n  - name: a\n    command: [\"/bin/true\"]\n    duty: d\n"
             + "fleet: {host: one, peers: [{name: two, url: \"http://127.0.0.1:1\"}], duties: {d: [one, two]}}\n")
            .write(to: listed, atomically: true, encoding: .utf8)
        let first = try AllegroBinary.run(["config", "check", plain.path], timeout: 20)
        let second = try AllegroBinary.run(["config", "check", listed.path], timeout: 20)
        #expect(first.status == 0 && second.status == 0, "\(first.stderr) \(second.stderr)")
        func values(_ output: String, _ file: URL) -> [String] {
            output.components(separatedBy: "\nservices:")[0].replacingOccurrences(of: file.path, with: "FILE").split(separator: "\n")
                .map(String.init).filter { !$0.hasPrefix("# services:") }
        }
        #expect(values(first.stdout, plain) == values(second.stdout, listed))
        #expect(second.stdout.contains("http: off") && second.stdout.contains(#"relay_id: "0123""#))
        #expect(second.stdout.contains(#"duty: "d""#) && second.stdout.contains(#"d: ["one", "two"]"#), "\(second.stdout)")
    }

    @Test func aBadConfigurationIsRejectedNamingTheKey() throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let cases: [(file: String?, environment: [String: String], mentions: [String])] = [
            ("ring_bytes: lots\n", [:], [#"ring_bytes = "lots""#, "allegro.yaml", "expected a whole number"]),
            ("ring_byts: 1048576\n", [:], [#"unknown configuration key "ring_byts""#, "ring_bytes"]),
            ("spill:\n  fsync_interval_ms: 5\n", [:], [#"unknown configuration key "spill""#]),
            ("heartbeat_ms: 20000\n", [:], ["idle_timeout_ms = 15000", "more than heartbeat_ms"]),
            ("spill_compression_level: 12\n", [:], ["spill_compression_level = 12", "1 ... 9"]),
            ("spill_fsync_interval_ms: 0.0001\n", [:], [#"spill_fsync_interval_ms = "0.0001""#, "up to three decimals"]),
            (nil, ["ALLEGRO_SPILL_FSYNC_INTERVAL_MS": "10000.5"], ["spill_fsync_interval_ms = 10000.5", "0 ... 10000"]),
            ("listen: [1, 2]\n", [:], ["listen", "expected text"]),
            ("log_level: shouting\n", [:], [#"log_level = "shouting""#, "trace, debug, info"]),
            ("producer_token: ~\n", [:], ["producer_token = null", "leave the key out"]),
            (nil, ["ALLEGRO_MAX_CONNECTIONS": "many"], [#"max_connections = "many""#, "(from environment)", "whole number"]),
            ("- just\n- a list\n", [:], ["must hold one mapping"]),
        ]
        for (index, item) in cases.enumerated() {
            var arguments = ["config", "check"]
            if let text = item.file {
                let directory = scratch.appendingPathComponent("case-\(index)")
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                let file = directory.appendingPathComponent("allegro.yaml")
                try text.write(to: file, atomically: false, encoding: .utf8)
                arguments.append(file.path)
            }
            for command in [arguments, ["relay", "--data", scratch.appendingPathComponent("data").path, "--http", "off"]
                                + (arguments.count > 2 ? ["--config", arguments[2]] : [])] {
                let result = try AllegroBinary.run(command, environment: item.environment, timeout: 20)
                #expect(result.status == 2, "\(command): \(result.stderr)")
                for text in item.mentions { #expect(result.stderr.contains(text), "\(text) in: \(result.stderr)") }
            }
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent("data").path), "nothing started")
    }

    // MARK: HTTP control port

    @Test func healthIsUnavailableWhileTheSpillCannotWriteAndRecovers() async throws {
        let relay = try RelayProcess(["--set", "max_frame_bytes=65536", "--set", "ring_bytes=1048576"] + TestTraffic.growingSpill)
        let serving = try await ControlHTTP.get(relay, "/health")
        let body = try serving.json()
        #expect(serving.status == 200 && body["status"] as? String == "serving", "\(serving.text)")
        try push(relay, (0 ..< 1000).map { "before-\($0)" }, producer: "health")

        // Every spill write now fails (EFBIG): the disk "cannot be written".
        try TestTraffic.freezeSpill(of: relay)
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let blocked = try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "health-2"],
                                              stdin: try StreamingTests.lines("during", 20_000, in: scratch))
        let failing = try await ControlHTTP.poll(relay, "/health") { $0.status == 503 }
        #expect(failing.status == 503, "\(failing.text)")
        let reason = try failing.json()["reason"] as? String ?? ""
        let failure = try failing.json()
        #expect(failure["status"] as? String == "failing")
        #expect(reason.contains("spill"), "the reason names the spill: \(reason)")
        let metrics = try await ControlHTTP.get(relay, "/metrics")
        #expect(ControlHTTP.sample(metrics.text, "allegro_spill_healthy") == 0)

        try TestTraffic.thawSpill(of: relay)
        let recovered = try await ControlHTTP.poll(relay, "/health") { $0.status == 200 }
        #expect(recovered.status == 200, "\(recovered.text)")
        let result = try blocked.wait(timeout: 60)
        #expect(result.status == 0 && result.stderr.contains("acked 20000"), "\(result.stderr)")
    }

    @Test func metricsPassPromtoolAndCountWhatWasPushed() async throws {
        let relay = try RelayProcess(["--durable", "timmy"])
        let lines = (0 ..< 2_000).map { "metric-record-\($0)" }
        try push(relay, lines, producer: "metrics")
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", "2000"], timeout: 60)
        #expect(tail.status == 0)
        let bad = try RawClient(relay.address)
        try bad.send([0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x02, 0x03, 0x04])
        let codes = try bad.errorsUntilClosed()
        let code = try #require(codes.first.flatMap { ErrorCode(rawValue: $0) })

        let answer = try await ControlHTTP.poll(relay, "/metrics") {
            ControlHTTP.sample($0.text, "allegro_protocol_errors_total{code=\"\(code.name)\"}") == 1
        }
        #expect(answer.status == 200)
        let text = answer.text
        let payloadBytes = Double(lines.reduce(0) { $0 + $1.utf8.count })
        #expect(ControlHTTP.sample(text, "allegro_records_in_total") == 2000)
        #expect(ControlHTTP.sample(text, "allegro_record_bytes_in_total") == payloadBytes)
        #expect(ControlHTTP.sample(text, "allegro_records_out_total") == 2000)
        #expect(ControlHTTP.sample(text, "allegro_record_bytes_out_total") == payloadBytes)
        #expect(ControlHTTP.sample(text, "allegro_spill_written_records_total") == 2000)
        #expect(ControlHTTP.sample(text, "allegro_records_duplicate_total") == 0)
        #expect(ControlHTTP.sample(text, "allegro_acks_outstanding") == 0)
        #expect(ControlHTTP.sample(text, "allegro_collector_lag_records{collector=\"timmy\"}") == 2000, "\(text)")
        #expect((ControlHTTP.sample(text, "allegro_spill_fsync_seconds_count") ?? 0) >= 1)
        #expect((ControlHTTP.sample(text, "allegro_dwell_seconds_count") ?? 0) >= 1)
        #expect(ControlHTTP.sample(text, "allegro_protocol_errors_total{code=\"\(code.name)\"}") == 1)

        // Prometheus' own linter (Debian package `prometheus`, installed by scripts/setup).
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let file = scratch.appendingPathComponent("metrics.txt")
        try answer.body.write(to: file)
        let promtool = Process()
        promtool.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
        promtool.arguments = ["check", "metrics"]
        promtool.standardInput = try FileHandle(forReadingFrom: file)
        let output = Pipe()
        promtool.standardOutput = output
        promtool.standardError = output
        try promtool.run()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        promtool.waitUntilExit()
        #expect(promtool.terminationStatus == 0, "promtool check metrics: \(report)")
    }

    @Test func catchUpFromTheSpillIsCountedAsReplay() async throws {
        // A ring far smaller than what is pushed: a collector from the start reads the spill.
        let relay = try RelayProcess(["--set", "max_frame_bytes=65536", "--set", "ring_bytes=262144"])
        let lines = (0 ..< 20_000).map { "replayed-\($0)-" + String(repeating: "x", count: 100) }
        try push(relay, lines, producer: "replay")
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", "20000"], timeout: 60)
        #expect(tail.status == 0)
        let text = try await ControlHTTP.get(relay, "/metrics").text
        let replayed = ControlHTTP.sample(text, "allegro_spill_replayed_records_total") ?? 0
        let held = ControlHTTP.sample(text, "allegro_ring_records") ?? 0
        #expect(ControlHTTP.sample(text, "allegro_records_out_total") == 20_000)
        #expect(replayed >= 20_000 - held && held < 20_000, "replayed \(replayed), ring holds \(held)")
        #expect((ControlHTTP.sample(text, "allegro_spill_replayed_bytes_total") ?? 0) > replayed * 100)
    }

    @Test func statusShowsHowFarBehindACollectorIs() async throws {
        let relay = try RelayProcess(["--durable", "timmy"])
        try push(relay, (0 ..< 300).map { "status-\($0)" }, producer: "status")
        let read = try AllegroBinary.run(["tail", "--relay", relay.address, "--collector", "timmy", "--from", "committed",
                                          "--count", "100"], timeout: 60)
        #expect(read.status == 0, "\(read.stderr)")
        let answer = try await ControlHTTP.poll(relay, "/status") { answer in
            let collectors = try answer.json()["collectors"] as? [[String: Any]] ?? []
            return collectors.first?["committed"] as? Int == 100
        }
        let status = try answer.json()
        #expect(status["state"] as? String == "serving")
        #expect(status["next_sequence"] as? Int == 301)
        let timmy = try #require((status["collectors"] as? [[String: Any]])?.first)
        #expect(timmy["name"] as? String == "timmy" && timmy["durable"] as? Bool == true && timmy["connected"] as? Bool == false)
        #expect(timmy["lag_records"] as? Int == 200)
        #expect((timmy["lag_seconds"] as? Double ?? 0) > 0)
        let spill = try #require(status["spill"] as? [String: Any])
        #expect(spill["durable_through"] as? Int == 300 && (spill["segments"] as? Int ?? 0) >= 1)
        #expect((status["ring"] as? [String: Any])?["records"] as? Int == 300)

        let table = try AllegroBinary.run(["status", "--http", try #require(relay.httpAddress)], timeout: 20)
        #expect(table.status == 0, "\(table.stderr)")
        let row = table.stdout.split(separator: "\n").first { $0.hasPrefix("timmy ") }.map(String.init) ?? ""
        #expect(row.contains("200 records") && row.contains("AWAY"), "\(table.stdout)")
        #expect(table.stdout.contains("spill: healthy"))
    }

    @Test func sessionSummariesMatchTheRecordsSent() async throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let relay = try RelayProcess(dataDirectory: data)
        let turns = (0 ..< 300).map { "{\"turn\":\($0)}" }
        let failures = (0 ..< 7).map { "{\"tool\":\"shell\",\"error\":\($0)}" }
        let other = (0 ..< 50).map { "beta-\($0)" }
        try push(relay, turns, producer: "hermes-1", session: "alpha", kind: "model_turn")
        try push(relay, failures, producer: "hermes-1", session: "alpha", kind: "tool_error")
        try push(relay, other, producer: "hermes-2", session: "beta", kind: "model_turn")
        try push(relay, (0 ..< 20).map { "no-session-\($0)" }, producer: "hermes-2")
        let bytes = { (lines: [String]) in lines.reduce(0) { $0 + $1.utf8.count } }

        let list = try await ControlHTTP.poll(relay, "/sessions") { answer in
            (try answer.jsonArray()).reduce(0) { $0 + ($1["records"] as? Int ?? 0) } == 357
        }
        let sessions = try list.jsonArray()
        #expect(sessions.count == 2, "records without a session are not summarised: \(list.text)")
        let alpha = try #require(sessions.first { $0["id"] as? String == "alpha" })
        #expect(alpha["records"] as? Int == 307 && alpha["errors"] as? Int == 7)
        #expect(alpha["bytes"] as? Int == bytes(turns) + bytes(failures))
        let beta = try #require(sessions.first { $0["id"] as? String == "beta" })
        #expect(beta["records"] as? Int == 50 && beta["errors"] as? Int == 0 && beta["bytes"] as? Int == bytes(other))
        #expect((alpha["first_seen_nanos"] as? Int ?? 0) <= (alpha["last_seen_nanos"] as? Int ?? 0))

        let detail = try (await ControlHTTP.get(relay, "/sessions/alpha")).json()
        let kinds = try #require(detail["kinds"] as? [[String: Any]])
        #expect(kinds.count == 2)
        #expect(kinds.first { $0["kind"] as? String == "model_turn" }?["records"] as? Int == 300)
        #expect(kinds.first { $0["kind"] as? String == "tool_error" }?["errors"] as? Int == 7)
        let producers = try #require(detail["producers"] as? [[String: Any]])
        #expect(producers.count == 1 && producers.first?["producer"] as? String == "hermes-1" && producers.first?["records"] as? Int == 307)
        #expect(try await ControlHTTP.get(relay, "/sessions/gamma").status == 404)

        let shown = try AllegroBinary.run(["sessions", "alpha", "--http", try #require(relay.httpAddress)], timeout: 20)
        #expect(shown.status == 0 && shown.stdout.contains("session alpha: 307 records"), "\(shown.stdout) \(shown.stderr)")
        #expect(shown.stdout.split(separator: "\n").contains { $0.hasPrefix("tool_error ") && $0.contains(" 7") })

        // Summaries are in SQLite: a restart keeps them.
        #expect(relay.stop() == 0)
        let again = try RelayProcess(dataDirectory: data)
        let kept = try (await ControlHTTP.get(again, "/sessions")).jsonArray()
        #expect(kept.first { $0["id"] as? String == "alpha" }?["records"] as? Int == 307)
    }

    @Test func sessionSummariesSurviveAKillNine() async throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let relay = try RelayProcess(dataDirectory: data)
        let lines = (0 ..< 5_000).map { "{\"turn\":\($0)}" }
        try push(relay, lines, producer: "hermes-9", session: "crashy", kind: "model_turn")
        // Acked means fsync'd in the spill; the summaries reach SQLite up to 200 ms later.
        relay.crash()
        let again = try RelayProcess(dataDirectory: data)
        let detail = try (await ControlHTTP.get(again, "/sessions/crashy")).json()
        let summary = try #require(detail["summary"] as? [String: Any])
        #expect(summary["records"] as? Int == 5_000, "counted once, whether saved before the crash or recovered: \(detail)")
        #expect(summary["bytes"] as? Int == lines.reduce(0) { $0 + $1.utf8.count })
        // The numbers the crashed run had reserved are skipped; none of them is awaited.
        let status = try await ControlHTTP.get(again, "/status").json()
        #expect(status["acks_outstanding"] as? Int == 0, "\(status)")
        #expect(again.stop() == 0)
        #expect(!again.log.contains("drain_timed_out"), "nothing to wait for: \(again.log)")
    }

    // MARK: Lifecycle

    @Test func sigtermUnderLoadExitsZeroAndTheRestartLosesNothingAcked() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let perProducer = 50_000
        let first = try RelayProcess(dataDirectory: data)
        let pushers = try PipedPushers(relay: first, prefix: "g")
        // Feeding goes on while the relay stops: the SIGTERM lands under load.
        let firstHalf = pushers.feeder
        let feeder = Thread { firstHalf.feed(0 ..< perProducer / 2) }
        feeder.start()
        usleep(300_000)
        #expect(first.stop() == 0, "SIGTERM under load exits 0: \(first.log.suffix(2000))")
        #expect(first.log.contains("event=draining") && first.log.contains("event=stopped"))
        #expect(!first.log.contains("drain_timed_out"), "\(first.log.suffix(2000))")

        let second = try RelayProcess(listen: first.address, dataDirectory: data)
        while !feeder.isFinished { usleep(10_000) }
        pushers.feed(perProducer / 2 ..< perProducer)
        try pushers.finish(perProducer: perProducer)
        #expect(!second.log.contains("sequences_skipped"), "a graceful stop leaves no reserved numbers behind")

        let result = try AllegroBinary.run(["tail", "--relay", second.address, "--from", "earliest", "--count",
                                            String(4 * perProducer)], timeout: 300)
        #expect(result.status == 0)
        let records = result.stdout.split(separator: "\n").compactMap { TailLine.parse(Data($0.utf8)).first ?? nil }
        let (next, problems) = TestTraffic.audit(records, gapless: true)
        #expect(records.count == 4 * perProducer)
        #expect(problems == 0, "every record exactly once, in producer order, with gapless sequences")
        #expect(next == ["g1": perProducer, "g2": perProducer, "g3": perProducer, "g4": perProducer])
    }

    @Test func aSecondSignalExitsAtOnce() async throws {
        let relay = try RelayProcess(["--set", "max_frame_bytes=65536", "--set", "ring_bytes=1048576",
                                      "--set", "shutdown_grace_ms=60000"] + TestTraffic.growingSpill)
        try push(relay, (0 ..< 100).map { "kept-\($0)" }, producer: "signals")
        // With the spill unable to write, the graceful stop would wait the whole grace period.
        try TestTraffic.freezeSpill(of: relay)
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let stuck = try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "signals-2"],
                                            stdin: try StreamingTests.lines("stuck", 5_000, in: scratch))
        usleep(500_000)
        kill(relay.pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while !relay.log.contains("event=draining") && Date() < deadline { usleep(10_000) }
        let health = try await ControlHTTP.get(relay, "/health")
        let state = try health.json()["status"] as? String
        #expect(health.status == 503 && state == "stopping", "\(health.text)")
        #expect(relay.isRunning, "still draining: the spill cannot make the records durable")
        kill(relay.pid, SIGTERM)
        relay.running.process.waitUntilExit()
        #expect(relay.running.process.terminationStatus == 128 + SIGTERM)
        #expect(relay.log.contains("event=exit_now"))
        stuck.process.terminate()

        // What was acked before is all there after a restart.
        let again = try RelayProcess(["--http", "off"], dataDirectory: relay.dataDirectory)
        let tail = try AllegroBinary.run(["tail", "--relay", again.address, "--from", "earliest", "--count", "100"], timeout: 60)
        let payloads = tail.stdout.split(separator: "\n").compactMap { TailLine.parse(Data($0.utf8)).first ?? nil }.map(\.payload)
        #expect(payloads == (0 ..< 100).map { "kept-\($0)" })
    }
}
