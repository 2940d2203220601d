import AllegroTestSupport
import Foundation
import Testing

/// Every descriptor the relay opens is closed exactly once, watched from outside with strace:
/// a second close(2) of a number would close whatever the control port or a SQLite reader had
/// opened under that number meanwhile.
@Suite(.serialized) struct DescriptorTests {
    static let strace = "/usr/bin/strace"

    @Test(arguments: 1 ... 3)
    func aGracefulStopWhileTheControlPortIsPolledClosesNoDescriptorTwice(round: Int) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.strace), "strace is installed by scripts/test")
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let trace = scratch.appendingPathComponent("close.trace")
        let relay = try RelayProcess(launcher: [Self.strace, "-f", "-qq", "-e", "trace=close", "-o", trace.path])

        let pushers = try PipedPushers(relay: relay, prefix: "fd\(round)-")
        let feeder = pushers.feeder
        let feeding = Thread { feeder.feed(0 ..< 20_000) }
        feeding.start()

        // Four pollers of /health and /sessions, until the relay has gone; the stop comes once
        // each has had an answer (or after 10 s), so it lands while they poll.
        let http = try #require(relay.httpAddress), pid = relay.pid
        let polling = PollCount()
        let answered = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0 ..< 4 {
                group.addTask {
                    var answers = 0
                    while kill(pid, 0) == 0 {
                        let path = index % 2 == 0 ? "/health" : "/sessions"
                        if (try? await ControlHTTP.get(address: http, path)) != nil {
                            answers += 1
                            if answers == 1 { await polling.add() }
                        }
                    }
                    return answers
                }
            }
            let deadline = Date().addingTimeInterval(10)
            while await polling.count < 4 && Date() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
            try await Task.sleep(nanoseconds: 100_000_000)
            kill(pid, SIGTERM)
            var total = 0
            for try await answers in group { total += answers }
            return total
        }
        relay.running.process.waitUntilExit()
        #expect(relay.running.process.terminationStatus == 0, "strace exits with the relay's status: \(relay.log.suffix(1500))")
        #expect(relay.log.contains("event=draining") && relay.log.contains("event=stopped"))
        #expect(answered > 0, "the control port was polled during the run")

        let lines = try String(contentsOf: trace, encoding: .utf8).split(separator: "\n")
        let closes = lines.filter { $0.contains("close(") }
        #expect(closes.count >= 20, "the trace saw the relay's closes (start-up alone makes dozens): \(closes.count)")
        let failed = closes.filter { $0.contains("EBADF") }
        #expect(failed.isEmpty, "no close(2) of a descriptor already closed: \(failed.prefix(5))")
    }
}

/// How many pollers have had an answer.
private actor PollCount {
    private(set) var count = 0
    func add() { count += 1 }
}
