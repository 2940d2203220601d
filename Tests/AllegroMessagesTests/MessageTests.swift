import AllegroMessages
import Foundation
import Testing

/// The seed's two messages in their three forms: exact Markdown, round trips through Markdown and
/// JSON, Telegram-safe HTML, and bad input refused naming the line and the field.
@Suite struct MessageTests {
    let request = try! AllegroRequest(
        type: .decision, urgency: .high, context: "https://gitea.example/timmy/home/issues/42",
        question: "Merge the approvals branch now,\nor wait for the review?", options: ["Merge now: faster", "Wait: safer"],
        recommendation: "Wait for the review <tomorrow> & then merge.", timeConstraint: "Before 2026-12-04 09:00 UTC")
    let report = try! AllegroReport(
        task: "Poll timmy/home", status: .inProgress, duration: "4m 12s", results: "3 issues triaged.\n\n1 needs Timmy.",
        artifacts: ["https://gitea.example/timmy/home/issues/42#c7"],
        telemetry: try! .init(executions: 12, successRatePercent: 91.66, avgLatencyMillis: 340), nextSteps: "Wait for Timmy.")

    @Test func aRequestRendersToTheSeedsMarkdownExactly() {
        #expect(request.markdown == """
            ## 🔄 Allegro Request
            **Type:** decision
            **Urgency:** high
            **Context:** https://gitea.example/timmy/home/issues/42
            **Question/Request:**
            Merge the approvals branch now,
            or wait for the review?
            **Options:**
            1. Merge now: faster
            2. Wait: safer
            **Recommendation:**
            Wait for the review <tomorrow> & then merge.
            **Time constraint:**
            Before 2026-12-04 09:00 UTC

            """)
    }

    @Test func aReportRendersToTheSeedsMarkdownExactlyWithOneDecimal() {
        #expect(report.markdown == """
            ## ✅ Allegro Report
            **Task:** Poll timmy/home
            **Status:** in-progress
            **Duration:** 4m 12s
            **Results:**
            3 issues triaged.

            1 needs Timmy.
            **Artifacts:**
            - https://gitea.example/timmy/home/issues/42#c7
            **Telemetry:**
            - Executions: 12
            - Success rate: 91.7%
            - Avg latency: 340ms
            **Next Steps:**
            Wait for Timmy.

            """)
    }

    @Test func bothFormsReadBackToEqualValuesAndTheSameBytes() throws {
        #expect(try AllegroRequest(markdown: request.markdown) == request)
        #expect(try AllegroRequest(json: request.json) == request)
        #expect(try AllegroReport(markdown: report.markdown) == report)
        #expect(try AllegroReport(json: report.json) == report)
        #expect(try AllegroMessage(markdown: report.markdown).json == report.json)
        #expect(try AllegroMessage(json: request.json).markdown == request.markdown)
        #expect(report.json.contains(#""telemetry":{"avg_latency_ms":340,"executions":12,"success_rate_percent":91.7}"#), "\(report.json)")
        let empty = try AllegroRequest(type: .alert, urgency: .critical, context: "spill", question: "q", recommendation: "r", timeConstraint: "now")
        #expect(try AllegroRequest(markdown: empty.markdown) == empty, "no options")
    }

    @Test func telegramHTMLEscapesTheTextAndKeepsTheBoldHeadings() {
        #expect(request.telegramHTML.contains("<b>Recommendation:</b>\nWait for the review &lt;tomorrow&gt; &amp; then merge."))
        #expect(request.telegramHTML.hasPrefix("<b>🔄 Allegro Request</b>\n<b>Type:</b> decision\n"))
        #expect(!report.telegramHTML.contains("**"))
    }

    @Test func badMarkdownIsRefusedNamingTheLineAndTheField() {
        let good = request.markdown
        let cases: [(String, String)] = [
            (good.replacingOccurrences(of: "**Urgency:** high", with: "**Urgency:** urgent"),
             #"line 3: urgency: "urgent" is not one of low, medium, high, critical"#),
            (good.replacingOccurrences(of: "**Question/Request:**\n", with: ""), "line 5: message: expected **Question/Request:**"),
            ("# Hello\n", "line 1: message: expected ## 🔄 Allegro Request or ## ✅ Allegro Report"),
            (good.replacingOccurrences(of: "\n", with: "\r\n"), "line 1: message: a carriage return"),
            (good.replacingOccurrences(of: "2. Wait", with: "3. Wait"), "line 10: options: expected \"2. ...\""),
            (String(good.dropLast()), "the last line does not end with LF"),
            (good.replacingOccurrences(of: "**Context:** https://gitea.example/timmy/home/issues/42", with: "**Context:** "),
             "line 4: context: empty"),
        ]
        for (text, expected) in cases {
            #expect(throws: MessageError.self) { try AllegroMessage(markdown: text) }
            do { _ = try AllegroMessage(markdown: text) } catch {
                #expect(error.description.contains(expected), "\(expected) <- \(error)")
            }
        }
        let reportCases: [(String, String)] = [
            (report.markdown.replacingOccurrences(of: "91.7%", with: "91.66%"), "line 13: telemetry.success_rate_percent"),
            (report.markdown.replacingOccurrences(of: "340ms", with: "340 ms"), "line 14: telemetry.avg_latency_ms"),
        ]
        for (text, expected) in reportCases {
            do { _ = try AllegroMessage(markdown: text) } catch {
                #expect(error.description.contains(expected), "\(expected) <- \(error)")
            }
        }
    }

    @Test func aTextThatWouldReadAsAHeadingIsRefusedWhenBuilt() {
        #expect(throws: MessageError("question", "the line \"**Options:**\" reads as a heading of the message")) {
            try AllegroRequest(type: .review, urgency: .low, context: "c", question: "a\n**Options:**", recommendation: "r", timeConstraint: "t")
        }
        #expect(throws: MessageError.self) {
            try AllegroRequest(type: .review, urgency: .low, context: "two\nlines", question: "q", recommendation: "r", timeConstraint: "t")
        }
    }

    @Test func badJSONIsRefusedNamingTheKey() {
        for (text, field) in [(#"{"message":"allegro.request"}"#, "context"),
                              (request.json.replacingOccurrences(of: #""urgency":"high""#, with: #""urgency":"high","extra":1"#), "extra"),
                              (report.json.replacingOccurrences(of: #""executions":12"#, with: #""executions":"12""#), "executions"),
                              (#"{"message":"allegro.alarm"}"#, "message"), ("[]", "message")] {
            do { _ = try AllegroMessage(json: text) } catch {
                #expect(error.field.hasSuffix(field), "\(field) <- \(error)")
            }
        }
    }

    @Test func comparisonsAreOnScalarsNotCharacters() throws {
        // A combining mark right after a label's space: the label still ends there.
        let accented = try AllegroRequest(type: .alert, urgency: .low, context: "\u{301}spill", question: "q", recommendation: "r",
                                          timeConstraint: "t")
        #expect(try AllegroRequest(markdown: accented.markdown) == accented)
        let html = try AllegroRequest(type: .alert, urgency: .low, context: "<\u{338} &\u{301}", question: "q", recommendation: "r",
                                      timeConstraint: "t").telegramHTML
        #expect(html.contains("&lt;\u{338} &amp;\u{301}"), "every < and & escaped, marks or not: \(html)")
    }

    @Test func aKeyGivenTwiceOrALoneSurrogateIsRefused() {
        let doubled = request.json.replacingOccurrences(of: #""urgency":"high""#, with: #""urgency":"high","urgency":"low""#)
        #expect(throws: MessageError("urgency", "duplicate key")) { try AllegroMessage(json: doubled) }
        let nested = report.json.replacingOccurrences(of: #""executions":12"#, with: #""executions":12,"executions":13"#)
        #expect(throws: MessageError("telemetry.executions", "duplicate key")) { try AllegroReport(json: nested) }
        let lone = request.json.replacingOccurrences(of: #""context":""#, with: #""context":"\ud800"#)
        #expect(throws: MessageError("message", "not valid JSON")) { try AllegroRequest(json: lone) }
    }
}
