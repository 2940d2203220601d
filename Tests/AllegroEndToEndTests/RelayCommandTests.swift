import AllegroTestSupport
import Foundation
import Testing

/// `allegro relay` start-up: configuration errors name their key, unsafe exposure is refused,
/// and SIGTERM stops it cleanly.
@Suite struct RelayCommandTests {
    @Test func refusesNonLoopbackWithoutTokens() throws {
        let result = try AllegroBinary.run(["relay", "--listen", "0.0.0.0:0", "--data", NSTemporaryDirectory() + "allegro-refuse"], timeout: 20)
        #expect(result.status == 2)
        #expect(result.stderr.contains("listen = 0.0.0.0:0"))
        #expect(result.stderr.contains("producer_token") && result.stderr.contains("collector_token"))
        let oneToken = try AllegroBinary.run(["relay", "--listen", "0.0.0.0:0", "--data", NSTemporaryDirectory() + "allegro-refuse"],
                                             environment: ["ALLEGRO_PRODUCER_TOKEN": "only-one"], timeout: 20)
        #expect(oneToken.status == 2)
    }

    @Test func badSettingsNameTheirKey() throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let cases: [(arguments: [String], file: String?, mentions: [String])] = [
            (["--set", "bogus=1"], nil, ["unknown configuration key \"bogus\"", "ring_bytes"]),
            (["--set", "max_connections=0"], nil, ["max_connections = 0", "1 ... 1000000"]),
            (["--set", "ring_records=lots"], nil, ["ring_records = \"lots\"", "whole number"]),
            (["--set", "idle_timeout_ms=100", "--set", "heartbeat_ms=200"], nil, ["idle_timeout_ms = 100", "more than heartbeat_ms"]),
            (["--listen", "nowhere"], nil, ["listen = nowhere"]),
            (["--http", "everywhere"], nil, ["http = everywhere"]),
            ([], #"{"ring_bytes": 1024}"#, ["ring_bytes = 1024", "4 x max_frame_bytes"]),
            ([], #"{"ring_bytes": "lots"}"#, ["ring_bytes = \"lots\"", "whole number"]),
            ([], #"{"durable_collectors": 7}"#, ["durable_collectors", "list of names"]),
            ([], #"{"listen": "127.0.0.1:0", "tokens": {}}"#, ["unknown configuration key \"tokens\""]),
            ([], #"{"log_level": "loud"}"#, ["log_level = \"loud\"", "trace, debug, info"]),
            ([], "not json", ["is not valid JSON"]),
        ]
        for (index, item) in cases.enumerated() {
            var arguments = ["relay", "--data", scratch.appendingPathComponent("data").path] + item.arguments
            if let file = item.file {
                let url = scratch.appendingPathComponent("config-\(index).json")
                try file.write(to: url, atomically: false, encoding: .utf8)
                arguments += ["--config", url.path]
            }
            let result = try AllegroBinary.run(arguments, timeout: 20)
            #expect(result.status == 2, "\(item.arguments) \(item.file ?? ""): \(result.stderr)")
            for text in item.mentions { #expect(result.stderr.contains(text), "\(text) in: \(result.stderr)") }
        }
    }

    @Test func configFileSettingsApply() throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let url = scratch.appendingPathComponent("allegro.json")
        try #"{"relay_id": "vps-1", "durable_collectors": ["timmy"], "max_batch_records": 100}"#.write(to: url, atomically: false, encoding: .utf8)
        let relay = try RelayProcess(["--config", url.path])
        #expect(relay.log.contains("relay_id=vps-1") && relay.log.contains("durable_collectors=timmy"))
        let client = try RawClient(relay.address)
        let welcome = try client.hello(.collector)
        #expect(welcome.first?.json.contains(#""max_batch":100"#) == true)
        #expect(welcome.first?.json.contains(#""relay_id":"vps-1""#) == true)
    }

    @Test func oneRelayPerDataDirectory() throws {
        let first = try RelayProcess()
        let second = try AllegroBinary.run(["relay", "--listen", "127.0.0.1:0", "--data", first.dataDirectory.path], timeout: 20)
        #expect(second.status != 0)
        #expect(second.stderr.contains("in use by another allegro relay"), "\(second.stderr)")
        #expect(first.isRunning)
    }

    @Test func aBusyControlPortIsReportedByAddress() throws {
        let first = try RelayProcess()
        let http = try #require(first.httpAddress)
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let second = try AllegroBinary.run(["relay", "--listen", "127.0.0.1:0", "--http", http, "--data", scratch.path], timeout: 30)
        #expect(second.status == 1)
        #expect(second.stderr.contains("HTTP control port cannot listen on \(http)"), "\(second.stderr)")
        #expect(second.stderr.contains("event=stopped"), "the relay it had started stopped cleanly")
        #expect(first.isRunning)
    }

    @Test func terminateStopsCleanly() throws {
        let relay = try RelayProcess()
        let client = try RawClient(relay.address)
        try client.hello(.producer, id: "watcher")
        #expect(relay.stop() == 0)
        #expect(try client.errorsUntilClosed(timeout: 5).last == 16, "clients are told SHUTTING_DOWN")
        #expect(relay.log.contains("event=stopped"))
    }
}
