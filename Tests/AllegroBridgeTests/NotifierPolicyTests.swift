@testable import AllegroBridge
import AllegroMessages
import Foundation
import Testing

/// The notifier's grouping alone (Alertmanager's timings), its outbox cursor, and Telegram's
/// text limits.
@Suite struct NotifierPolicyTests {
    let timing = NotifierPolicy.Timing(groupWaitMillis: 1000, groupIntervalMillis: 5000, repeatIntervalMillis: 60_000)

    func alert(_ name: String, _ subject: String, _ status: AllegroAlert.Status = .firing) -> AllegroAlert {
        // Built from literals the tests choose; a refusal is a test bug.
        try! AllegroAlert(alert: name, subject: subject, status: status, severity: .warning, summary: "\(subject) is <odd> & away", sinceMillis: 1)
    }

    @Test func aBurstOfOneThousandAlertsBecomesOneMessagePerGroupAfterTheGroupWait() {
        var policy = NotifierPolicy(timing: timing)
        var sequence: UInt64 = 100
        for index in 0 ..< 1000 {
            sequence += 1
            policy.take(alert(index % 2 == 0 ? "collector_away" : "disk_filling", "s\(index % 100)"), sequence: sequence, nowMillis: 0)
        }
        #expect(policy.due(nowMillis: 999) == nil)
        #expect(policy.oldestPendingSequence == 101)
        var messages: [NotifierPolicy.Outgoing] = []
        while let outgoing = policy.due(nowMillis: 1000) {
            messages.append(outgoing)
            policy.delivered(outgoing, nowMillis: 1000)
        }
        #expect(messages.count == 2)
        #expect(policy.oldestPendingSequence == nil)
        for subject in (0 ..< 100).map({ "s\($0)" }) {
            #expect(messages.contains { $0.html.contains(subject) })
        }
        #expect(messages.allSatisfy { !$0.html.contains("<odd>") }, "text is escaped")
        #expect(policy.due(nowMillis: 50_000) == nil)
        #expect(policy.due(nowMillis: 61_000)?.html.contains("Still firing") == true, "an unchanged firing group is reminded")
    }

    @Test func changesWaitForTheGroupIntervalAndAResolutionIsToldOnce() {
        var policy = NotifierPolicy(timing: timing)
        policy.take(alert("collector_away", "timmy"), sequence: 1, nowMillis: 0)
        let first = policy.due(nowMillis: 1000)!
        policy.delivered(first, nowMillis: 1000)
        policy.take(alert("collector_away", "timmy"), sequence: 2, nowMillis: 1100)
        #expect(policy.oldestPendingSequence == nil, "the same alert firing again is nothing new")
        policy.take(alert("collector_away", "timmy", .resolved), sequence: 3, nowMillis: 1200)
        #expect(policy.oldestPendingSequence == 3)
        #expect(policy.due(nowMillis: 5999) == nil)
        let resolved = policy.due(nowMillis: 6000)!
        #expect(resolved.html.contains("Resolved") && resolved.html.hasPrefix("✅"))
        policy.delivered(resolved, nowMillis: 6000)
        policy.take(alert("collector_away", "timmy", .resolved), sequence: 4, nowMillis: 6100)
        #expect(policy.due(nowMillis: 100_000) == nil && policy.oldestPendingSequence == nil)
    }

    @Test func requestsGoFirstInStreamOrderAndHoldTheCursorUntilDelivered() {
        var policy = NotifierPolicy(timing: timing)
        policy.take(alert("collector_away", "timmy"), sequence: 5, nowMillis: 0)
        policy.take(html: "<b>first</b>", sequence: 7)
        policy.take(html: "<b>second</b>", sequence: 9)
        #expect(policy.oldestPendingSequence == 5)
        let first = policy.due(nowMillis: 0)!
        #expect(first.html == "<b>first</b>")
        policy.delivered(first, nowMillis: 0)
        #expect(policy.due(nowMillis: 0)?.html == "<b>second</b>")
    }

    @Test func whatWasToldSurvivesARestartThroughTheLedgerState() {
        var policy = NotifierPolicy(timing: timing)
        policy.take(alert("collector_away", "timmy"), sequence: 1, nowMillis: 0)
        policy.take(alert("collector_away", "hermes"), sequence: 2, nowMillis: 0)
        policy.delivered(policy.due(nowMillis: 1000)!, nowMillis: 1000)
        var restarted = NotifierPolicy(timing: timing, ledger: policy.ledger(committed: 0))
        restarted.take(alert("collector_away", "timmy"), sequence: 3, nowMillis: 2000)
        #expect(restarted.oldestPendingSequence == nil, "already told before the restart")
        restarted.take(alert("collector_away", "timmy", .resolved), sequence: 4, nowMillis: 2000)
        #expect(restarted.due(nowMillis: 5999) == nil)
        #expect(restarted.due(nowMillis: 6000)?.html.contains("1 resolved") == true)
    }

    @Test func longTextIsSplitAtLineEndsAndNeverInsideAnEntity() {
        let line = String(repeating: "a", count: 100)
        let parts = TelegramText.split(Array(repeating: line, count: 100).joined(separator: "\n"), limit: 1000)
        // Nine lines of 100 and their eight line ends fit in 1,000; a tenth would not.
        #expect(parts.count == 12 && parts.allSatisfy { $0.utf16.count <= 1000 })
        #expect(parts.joined(separator: "\n") == Array(repeating: line, count: 100).joined(separator: "\n"))
        let entities = String(repeating: "x&amp;", count: 500)
        let cut = TelegramText.split(entities, limit: 100)
        #expect(cut.joined() == entities && cut.allSatisfy { $0.utf16.count <= 100 })
        #expect(cut.allSatisfy { piece in !piece.hasSuffix("&") && !piece.hasSuffix("&amp") && !piece.hasPrefix("amp;") })
        #expect(TelegramText.split("🙂" + String(repeating: "b", count: 10), limit: 3).joined() == "🙂" + String(repeating: "b", count: 10))
        #expect(TelegramText.plain("<b>a &lt;b&gt; &amp;lt;</b>") == "a <b> &lt;")
    }

    @Test func aRelayFailingItsHealthLongerThanTheLimitIsToldByTheNotifierItselfAndResolvedOnRecovery() {
        var rule = RelayHealthRule(subject: "127.0.0.1:7401", downMillis: 10_000)
        #expect(rule.observe(healthy: false, reason: "HTTP 503 spill", nowMillis: 0) == nil)
        #expect(rule.observe(healthy: false, reason: "HTTP 503 spill", nowMillis: 9_999) == nil)
        let fired = rule.observe(healthy: false, reason: "HTTP 503 spill", nowMillis: 10_000)
        #expect(fired?.alert == "relay_unhealthy" && fired?.status == .firing && fired?.severity == .critical && fired?.sinceMillis == 0)
        #expect(rule.observe(healthy: false, reason: "still", nowMillis: 20_000) == nil)
        #expect(rule.observe(healthy: true, reason: "", nowMillis: 30_000)?.status == .resolved)
        #expect(rule.observe(healthy: true, reason: "", nowMillis: 40_000) == nil)
        // Its alert holds no cursor back: it came in no record.
        var policy = NotifierPolicy(timing: timing)
        if let fired { policy.take(fired, sequence: nil, nowMillis: 0) }
        #expect(policy.oldestPendingSequence == nil && policy.due(nowMillis: 1000) != nil)
    }

    @Test func telegramsAnswersAreReadAsTheApiDocumentsThem() {
        func outcome(_ status: Int, _ body: String) -> TelegramOutcome { TelegramClient.outcome(status: status, answer: Data(body.utf8)) }
        #expect(outcome(200, #"{"ok":true,"result":{"message_id":5}}"#) == .accepted)
        #expect(outcome(429, #"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#) == .retryAfter(seconds: 7))
        #expect(outcome(400, #"{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities: Unsupported start tag"}"#)
            == .badMarkup("Bad Request: can't parse entities: Unsupported start tag"))
        #expect(outcome(401, #"{"ok":false,"error_code":401,"description":"Unauthorized"}"#) == .refused(status: 401, description: "Unauthorized"))
        #expect(outcome(502, "<html>bad gateway</html>") == .unavailable("HTTP 502"))
        #expect(outcome(200, "not json") == .unavailable("HTTP 200"))
    }

    @Test func afterARestartWhatWasToldAboveTheCommittedCursorIsNotToldAgain() {
        // An alert group waits (holding the cursor at 10) while a request and another group are told.
        var policy = NotifierPolicy(timing: timing)
        policy.take(alert("collector_away", "timmy"), sequence: 11, nowMillis: 0)
        policy.delivered(policy.due(nowMillis: 1000)!, nowMillis: 1000)
        policy.take(alert("collector_away", "timmy", .resolved), sequence: 12, nowMillis: 1100)
        policy.take(html: "<b>urgent</b>", sequence: 13)
        policy.delivered(policy.due(nowMillis: 1100)!, nowMillis: 1100)
        policy.take(alert("disk_filling", "relay-1"), sequence: 14, nowMillis: 1200)
        policy.take(alert("spill_write_failed", "relay-1"), sequence: 15, nowMillis: 1200)
        policy.delivered(policy.due(nowMillis: 2200)!, nowMillis: 2200)
        #expect(policy.oldestPendingSequence == 12)
        let ledger = policy.ledger(committed: 11)

        // The notifier is killed; the relay gives it everything after 11 again.
        var restarted = NotifierPolicy(timing: timing, ledger: ledger)
        restarted.take(alert("collector_away", "timmy", .resolved), sequence: 12, nowMillis: 3000)
        restarted.take(html: "<b>urgent</b>", sequence: 13)
        restarted.take(alert("disk_filling", "relay-1"), sequence: 14, nowMillis: 3000)
        restarted.take(alert("spill_write_failed", "relay-1"), sequence: 15, nowMillis: 3000)
        var told: [String] = []
        for now in stride(from: Int64(3000), through: 20_000, by: 500) {
            while let outgoing = restarted.due(nowMillis: now) {
                told.append(outgoing.html)
                restarted.delivered(outgoing, nowMillis: now)
            }
        }
        #expect(told.count == 2, "the resolution still owed, and the untold group: \(told)")
        #expect(told.contains { $0.contains("collector_away") && $0.contains("Resolved") })
        #expect(!told.contains { $0.contains("urgent") || $0.contains("disk_filling") })
        #expect(restarted.ledger(committed: 15).groupsThrough.isEmpty, "marks at or below the cursor are dropped")
    }

    @Test func aLongListOfSubjectsSplitsBetweenSubjectsNeverInsideOne() {
        var policy = NotifierPolicy(timing: timing)
        let subjects = (0 ..< 400).map { "split_group/\($0)/" + String(repeating: "x", count: 40) + "&" }
        for (index, subject) in subjects.enumerated() {
            policy.take(alert("collector_away", subject), sequence: UInt64(index + 1), nowMillis: 0)
        }
        let parts = TelegramText.split(policy.due(nowMillis: 1000)!.html)
        #expect(parts.count > 1 && parts.allSatisfy { $0.utf16.count <= TelegramText.maxCharacters })
        let text = parts.map(TelegramText.plain).joined(separator: "\n")
        for subject in subjects { #expect(text.contains(subject)) }
    }

    @Test func alertsPastTheBoundsAreCountedToldAndHoldTheCursorUntilThen() {
        var policy = NotifierPolicy(timing: timing)
        for index in 0 ..< NotifierPolicy.maxGroups + 5 {
            policy.take(alert("name-\(index)", "s"), sequence: UInt64(index + 1), nowMillis: 0)
        }
        #expect(policy.groups.count == NotifierPolicy.maxGroups + 1)
        var told: [String] = []
        while let outgoing = policy.due(nowMillis: 1000) {
            told.append(outgoing.html)
            policy.delivered(outgoing, nowMillis: 1000)
        }
        #expect(told.contains { $0.contains("(other alerts)") && $0.contains("5 more not tracked") })
        #expect(policy.oldestPendingSequence == nil)
    }

    @Test func anAlertThatFiresAndResolvesBeforeItIsToldIsToldResolvedOnce() {
        var policy = NotifierPolicy(timing: timing)
        policy.take(alert("disk_filling", "relay-1"), sequence: 1, nowMillis: 0)
        policy.take(alert("disk_filling", "relay-1", .resolved), sequence: 2, nowMillis: 10)
        let told = policy.due(nowMillis: 1000)
        #expect(told?.html.contains("1 resolved") == true && told?.html.contains("new") == false)
        policy.delivered(told!, nowMillis: 1000)
        #expect(policy.groups.isEmpty && policy.oldestPendingSequence == nil)
    }

    @Test func withoutALedgerAResolutionOfAnAlertNeverSeenIsStillTold() {
        var trusting = NotifierPolicy(timing: timing)
        trusting.take(alert("collector_away", "timmy", .resolved), sequence: 1, nowMillis: 0)
        #expect(trusting.due(nowMillis: 1000) == nil)
        var lost = NotifierPolicy(timing: timing, tellsUnknownResolutions: true)
        lost.take(alert("collector_away", "timmy", .resolved), sequence: 1, nowMillis: 0)
        #expect(lost.due(nowMillis: 1000)?.html.contains("Resolved") == true)
    }

    @Test func onlyRefusalsOfTheTextItselfCanDropAPartAndSecretsTravelOnlyToSafeURLs() {
        #expect(NotifierService.isContentRefusal("Bad Request: message is too long"))
        #expect(NotifierService.isContentRefusal("Bad Request: can't parse entities: x"))
        #expect(!NotifierService.isContentRefusal("Bad Request: chat not found"))
        #expect(!NotifierService.isContentRefusal("Bad Request: group chat was upgraded to a supergroup chat"))
        #expect(!NotifierService.isContentRefusal("Forbidden: bot was blocked by the user"))
        for good in ["https://api.telegram.org", "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:5"] {
            #expect(BridgeSettings.isSafeBaseURL(good), "\(good)")
        }
        for bad in ["http://127.evil.example", "http://localhost.evil.com", "http://localhost@evil.com/", "http://user:pw@127.0.0.1",
                    "ftp://127.0.0.1", "http://10.0.0.1", "api.telegram.org"] {
            #expect(!BridgeSettings.isSafeBaseURL(bad), "\(bad)")
        }
        #expect(BridgeProcess.isPlausibleToken("123456:ABC-def_9"))
        for bad in ["123456", ":abc", "12a:abc", "123:ab%2F", "123:a b", "123:abc/def"] { #expect(!BridgeProcess.isPlausibleToken(bad), "\(bad)") }
    }
}
