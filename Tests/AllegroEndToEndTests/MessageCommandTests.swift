import AllegroTestSupport
import Foundation
import Testing

/// `allegro message publish` on the real binary: a Report written in Markdown reaches Timmy's
/// stream as an `allegro.report` record whose payload is its canonical JSON; a message that is not
/// one is refused naming the line, and nothing is published.
@Suite struct MessageCommandTests {
    @Test func aReportInMarkdownReachesTheStreamAsItsJSON() throws {
        let relay = try RelayProcess(["--http", "off"])
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let report = scratch.appendingPathComponent("report.md")
        try """
            ## ✅ Allegro Report
            **Task:** Poll timmy/home
            **Status:** complete
            **Duration:** 2s
            **Results:**
            Nothing new.
            **Artifacts:**
            **Telemetry:**
            - Executions: 1
            - Success rate: 100.0%
            - Avg latency: 12ms
            **Next Steps:**
            Poll again in 5 minutes.

            """.write(to: report, atomically: false, encoding: .utf8)
        let published = try AllegroBinary.run(["message", "publish", "--relay", relay.address, "--session", "poll-1", report.path], timeout: 30)
        #expect(published.status == 0, "\(published.stderr)")
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", "1"], timeout: 30)
        #expect(tail.stdout.contains(#""session":"poll-1","kind":"allegro.report","content_type":"application/json""#), "\(tail.stdout)")
        #expect(tail.stdout.contains(#"\"message\":\"allegro.report\""#) && tail.stdout.contains(#"\"success_rate_percent\":100.0"#),
                "\(tail.stdout)")

        let broken = scratch.appendingPathComponent("broken.md")
        try "## ✅ Allegro Report\n**Task:** x\n**Status:** done\n".write(to: broken, atomically: false, encoding: .utf8)
        let refused = try AllegroBinary.run(["message", "publish", "--relay", relay.address, broken.path], timeout: 30)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains(#"line 3: status: "done" is not one of complete, in-progress, blocked, failed"#), "\(refused.stderr)")
        let after = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--idle-exit-ms", "500"], timeout: 30)
        #expect(after.stdout.split(separator: "\n").count == 1, "nothing more was published: \(after.stdout)")
    }
}
