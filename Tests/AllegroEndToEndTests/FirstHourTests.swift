import AllegroTestSupport
import AllegroWire
import Foundation
import Testing

/// What a newcomer meets first, on the real binary: no silent waits, the README's commands
/// working against the relay the embedded defaults start, errors that say how to fix them, and
/// a control port that cannot face the network unauthenticated.
@Suite struct FirstHourTests {
    /// A loopback port nothing listens on (bound, then released).
    private func closedPort() throws -> String {
        let relay = try RelayProcess(["--http", "off"])
        let address = relay.address
        relay.stop()
        return address
    }

    @Test func pushToAStoppedRelaySaysAtOnceWhyItWaitsAndEndsWithTheReason() throws {
        let address = try closedPort()
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = scratch.appendingPathComponent("lines")
        try "one\n".write(to: input, atomically: false, encoding: .utf8)
        // The first message comes at once, long before the 30 s of retrying are up.
        let waiting = try AllegroBinary.start(["push", "--relay", address], stdin: input)
        let deadline = Date().addingTimeInterval(10)
        while !waiting.stderr.contains("retrying for") && Date() < deadline { usleep(20_000) }
        #expect(waiting.stderr.contains("cannot reach the relay at \(address)"), "\(waiting.stderr)")
        #expect(waiting.stderr.contains("retrying for 30 s (--connect-timeout)"), "\(waiting.stderr)")
        // With a short timeout it gives up with the reason.
        let result = try AllegroBinary.run(["push", "--relay", address, "--connect-timeout", "1"], stdin: input, timeout: 30)
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.first?.contains("retrying for 1 s") == true, "\(result.stderr)")
        #expect(lines.last?.contains("cannot reach the relay at \(address)") == true, "\(result.stderr)")
    }

    @Test func aPushThatGoesWellPrintsOnlyItsSummary() throws {
        let relay = try RelayProcess(["--http", "off"])
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = scratch.appendingPathComponent("lines")
        try "a\nb\n".write(to: input, atomically: false, encoding: .utf8)
        let result = try AllegroBinary.run(["push", "--relay", relay.address], stdin: input, timeout: 30)
        #expect(result.status == 0)
        #expect(result.stderr == "allegro push: sent 2 records, acked 2\n", "all went well: one line, no progress in a pipe")
    }

    @Test func aLineTooLongForARecordIsNamedWithTheLimitAndTheLinesBeforeItAreAcked() throws {
        let relay = try RelayProcess(["--http", "off"])
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = scratch.appendingPathComponent("lines")
        try ("one\ntwo\n" + String(repeating: "x", count: 2_000_000) + "\nfour\n").write(to: input, atomically: false, encoding: .utf8)
        let result = try AllegroBinary.run(["push", "--relay", relay.address, "--producer", "p"], stdin: input, timeout: 60)
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 3 is 2000000 bytes"), "\(result.stderr)")
        #expect(result.stderr.contains("max_frame_bytes is 1048576"), "\(result.stderr)")
        #expect(result.stderr.contains("before it, 2 lines sent, 2 acked"), "\(result.stderr)")
        // The most a line can be, with these fields, is accepted.
        let limit = 1_048_576 - 45 - "p".utf8.count - "text/plain".utf8.count
        try (String(repeating: "y", count: limit) + "\n").write(to: input, atomically: false, encoding: .utf8)
        let fits = try AllegroBinary.run(["push", "--relay", relay.address, "--producer", "p"], stdin: input, timeout: 60)
        #expect(fits.status == 0, "\(fits.stderr)")
    }

    @Test func theDurableTailInTheReadmeWorksAgainstTheEmbeddedDefaults() throws {
        let relay = try RelayProcess()
        try TestTraffic.push(relay, ["hello"], producer: "readme")
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--collector", "timmy", "--from", "committed",
                                          "--count", "1", "--format", "jsonl"], timeout: 30)
        #expect(tail.status == 0, "\(tail.stderr)")
        #expect(tail.stdout.contains(#""payload":"hello""#), "\(tail.stdout)")
    }

    @Test func configCheckShowsTheRingSizeInForceWhenItWasRoundedUp() throws {
        let result = try AllegroBinary.run(["config", "check", "--set", "ring_bytes=5000000"], timeout: 20)
        #expect(result.status == 0, "\(result.stderr)")
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("ring_bytes:") }.map(String.init) ?? ""
        #expect(line.hasPrefix("ring_bytes: 8388608") && line.contains("rounded up from 5000000 to a power of two"), "\(line)")
    }

    @Test func anUnknownCollectorIsToldHowToConfigureOne() throws {
        let relay = try RelayProcess(["--http", "off"])
        let client = try RawClient(relay.address)
        try client.hello(.collector)
        try client.send(.subscribe(start: .committed, credit: 1, name: "archive"))
        let errors = try client.receive(until: { $0.type == .error }, timeout: 10).filter { $0.type == .error }
        #expect(errors.first?.errorCode == ErrorCode.unknownCollector.rawValue)
        #expect(errors.first?.message.contains("--durable archive") == true, "\(errors)")
        #expect(errors.first?.message.contains("durable_collectors") == true)
    }

    @Test func aControlPortOffLoopbackNeedsAControlToken() async throws {
        let data = NSTemporaryDirectory() + "allegro-control-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let refused = try AllegroBinary.run(["relay", "--data", data, "--http", "0.0.0.0:0"], timeout: 20)
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("http = 0.0.0.0:0") && refused.stderr.contains("control_token"), "\(refused.stderr)")

        let relay = try RelayProcess(["--http", "0.0.0.0:0"], environment: ["ALLEGRO_CONTROL_TOKEN": "control-secret-42"])
        let health = try await ControlHTTP.get(relay, "/health")
        #expect(health.status == 200, "load balancers poll /health without a token")
        for path in ["/status", "/sessions", "/metrics"] {
            let anonymous = try await ControlHTTP.get(relay, path)
            #expect(anonymous.status == 401, "\(path): \(anonymous.text)")
            let wrong = try await ControlHTTP.get(relay, path, bearer: "control-secret-43")
            #expect(wrong.status == 401, "\(path)")
            let allowed = try await ControlHTTP.get(relay, path, bearer: "control-secret-42")
            #expect(allowed.status == 200, "\(path): \(allowed.text)")
        }
        #expect(!relay.log.contains("control-secret-42"), "the token is never logged")
    }
}
