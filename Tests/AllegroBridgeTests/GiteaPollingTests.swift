@testable import AllegroBridge
@testable import AllegroGitea
import Foundation
import Testing

/// The Gitea duty's parts that need no Gitea: reading pages' Link headers, the records Timmy
/// gets, and the outbox that publishes each change once under a sequence it keeps.
@Suite struct GiteaPollingTests {
    @Test func theNextPageIsReadFromGiteasLinkHeader() {
        let header = #"<https://git.example/api/v1/repos/o/r/issues?limit=2&page=2>; rel="next",<https://git.example/api/v1/repos/o/r/issues?limit=2&page=5>; rel="last""#
        #expect(LinkHeader.url(header, rel: "next") == "https://git.example/api/v1/repos/o/r/issues?limit=2&page=2")
        #expect(LinkHeader.url(header, rel: "last")?.hasSuffix("page=5") == true)
        #expect(LinkHeader.url(header, rel: "prev") == nil)
        #expect(LinkHeader.url("garbage", rel: "next") == nil)
    }

    @Test func anIssueAndAPullAndACommentBecomeRecordsForTimmy() throws {
        let issueJSON = #"{"id":7,"number":3,"title":"Fix <it>","body":"details","state":"open","labels":[{"id":1,"name":"status/triage"}],"user":{"id":2,"login":"alice"},"comments":0,"html_url":"https://git.example/o/r/issues/3","created_at":"2026-12-03T10:00:00Z","updated_at":"2026-12-03T10:05:00Z","extra":{"ignored":true}}"#
        let issue = try JSONDecoder().decode(GiteaIssue.self, from: Data(issueJSON.utf8))
        let change = GiteaRecords.change(repo: "o/r", issue: issue)
        #expect(change.kind == "gitea.issue" && change.session == "o/r#3" && change.updatedAt == "2026-12-03T10:05:00Z")
        let payload = try #require(JSONSerialization.jsonObject(with: Data(change.payload.utf8)) as? [String: Any])
        #expect(payload["repo"] as? String == "o/r" && payload["number"] as? Int == 3 && payload["title"] as? String == "Fix <it>")
        #expect(payload["labels"] as? [String] == ["status/triage"] && payload["user"] as? String == "alice" && payload["state"] as? String == "open")
        #expect(payload["html_url"] as? String == "https://git.example/o/r/issues/3")

        var pull = issue
        pull.pullRequest = GiteaPullRequestMeta(merged: false, draft: false, htmlURL: nil)
        #expect(GiteaRecords.change(repo: "o/r", issue: pull).kind == "gitea.pull")

        let commentJSON = #"{"id":99,"body":"LGTM","user":{"id":2,"login":"alice"},"issue_url":"https://git.example/o/r/issues/3","html_url":"https://git.example/o/r/issues/3#issuecomment-99","created_at":"2026-12-03T10:06:00Z","updated_at":"2026-12-03T10:06:00Z"}"#
        let comment = try JSONDecoder().decode(GiteaComment.self, from: Data(commentJSON.utf8))
        let commented = try #require(GiteaRecords.change(repo: "o/r", comment: comment))
        #expect(commented.kind == "gitea.comment" && commented.session == "o/r#3" && commented.payload.contains(#""body":"LGTM""#))
        #expect(GiteaRecords.cut(String(repeating: "é", count: 40_000)).utf8.count <= GiteaRecords.maxBodyBytes + 3)
    }

    @Test func theOutboxTakesEachChangeOnceUnderSequencesThatOnlyGrow() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try BridgeStore(path: directory.appendingPathComponent("bridge.sqlite").path)
        func change(_ id: Int64, _ updated: String) -> BridgeStore.Change {
            BridgeStore.Change(repo: "o/r", kind: "gitea.issue", id: id, updatedAt: updated, session: "o/r#\(id)", payload: "{\"id\":\(id)}")
        }
        let first = try store.enqueue([change(1, "a"), change(2, "a")], nowMillis: 0)
        #expect(first.added == 2 && first.firstSeen.map(\.id) == [1, 2])
        let second = try store.enqueue([change(1, "a"), change(2, "b")], nowMillis: 1)
        #expect(second.added == 1 && second.firstSeen.isEmpty, "only what changed; nothing seen for the first time")
        let rows = try store.pending(limit: 10)
        #expect(rows.count == 3 && rows.map(\.payload) == ["{\"id\":1}", "{\"id\":2}", "{\"id\":2}"])
        #expect(zip(rows, rows.dropFirst()).allSatisfy { $1.sequence == $0.sequence + 1 }, "contiguous")
        #expect(rows[0].sequence > 1_000_000_000_000_000, "from the wall clock: a lost file never reuses numbers")
        try store.acknowledged(through: rows[1].sequence)
        #expect(try store.pending(limit: 10).map(\.sequence) == [rows[2].sequence])

        // The same file again (a restart): numbering goes on, nothing seen is taken twice.
        let reopened = try BridgeStore(path: directory.appendingPathComponent("bridge.sqlite").path)
        #expect(try reopened.enqueue([change(2, "b"), change(3, "a")], nowMillis: 2).added == 1)
        #expect(try reopened.pending(limit: 10).map(\.sequence) == [rows[2].sequence, rows[2].sequence + 1])
        try reopened.forgetSeen(before: 2)
        #expect(try reopened.enqueue([change(1, "a")], nowMillis: 3).added == 1, "forgotten after the retention")
    }

    @Test func anOlderVersionIsNeverTakenAndALateWebhookNotEvenOneOfTheSameSecond() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try BridgeStore(path: directory.appendingPathComponent("bridge.sqlite").path)
        func change(_ updated: String, _ title: String) -> BridgeStore.Change {
            BridgeStore.Change(repo: "o/r", kind: "gitea.issue", id: 1, updatedAt: updated, session: "o/r#1",
                               payload: "{\"title\":\"\(title)\"}", updatedMillis: GiteaRecords.millis(updated) ?? 0)
        }
        #expect(try store.enqueue([change("2026-12-03T10:00:05Z", "new")], nowMillis: 0).added == 1)
        // A webhook's late payload, or a poll that read before it: older, never after the newer.
        #expect(try store.enqueue([change("2026-12-03T10:00:04Z", "old")], nowMillis: 1).added == 0)
        #expect(try store.enqueue([change("2026-12-03T10:00:04Z", "old")], nowMillis: 1, newerOnly: true).added == 0)
        // The same second, other content: a poll (which reads Gitea now) takes it; a webhook does not.
        let sameSecond = try store.enqueue([change("2026-12-03T10:00:05Z", "same second")], nowMillis: 2, newerOnly: true)
        #expect(sameSecond.added == 0 && sameSecond.undecided == 1, "left to a poll, which reads Gitea now")
        #expect(try store.enqueue([change("2026-12-03T10:00:05Z", "same second")], nowMillis: 2).added == 1)
        #expect(try store.enqueue([change("2026-12-03T10:00:06Z", "newer")], nowMillis: 3, newerOnly: true).added == 1)
        #expect(try store.pending(limit: 10).map(\.payload) == [#"{"title":"new"}"#, #"{"title":"same second"}"#, #"{"title":"newer"}"#])
    }

    @Test func theWebhookTakesAnIssueOrCommentEventFromItsPayloadAndLeavesTheRestToAPoll() throws {
        let issue = #"{"id":7,"number":3,"title":"T","state":"open","updated_at":"2026-12-03T10:05:00Z"}"#
        let comment = #"{"id":99,"body":"Hi","issue_url":"","updated_at":"2026-12-03T10:06:00Z"}"#
        let decoder = JSONDecoder()
        let opened = try decoder.decode(GiteaWebhook.Payload.self, from: Data(#"{"action":"opened","issue":\#(issue),"repository":{}}"#.utf8))
        #expect(opened.issue?.number == 3 && opened.comment == nil)
        let commented = try decoder.decode(GiteaWebhook.Payload.self, from: Data(#"{"action":"created","issue":\#(issue),"comment":\#(comment)}"#.utf8))
        let taken = try #require(commented.comment.flatMap { GiteaRecords.change(repo: "o/r", comment: $0, number: commented.issue?.number) })
        #expect(taken.session == "o/r#3" && taken.updatedMillis == GiteaRecords.millis("2026-12-03T10:06:00Z"))
        let pull = try decoder.decode(GiteaWebhook.Payload.self, from: Data(#"{"action":"opened","number":4,"pull_request":{"id":1}}"#.utf8))
        #expect(pull.issue == nil, "a pull request event carries no issue: the poller reads the repository")
    }
}

/// The poller's doorbell: it sleeps until asked, and is never left asleep by a ring.
@Suite struct PollTriggerTests {
    @Test func aRingWakesTheWaiterAndARingBeforeTheWaitIsNotLost() async {
        let trigger = PollTrigger()
        trigger.request("o/r")
        await trigger.wait(upTo: .seconds(600))            // rung before: returns at once
        #expect(trigger.take().repos == ["o/r"])
        let waiting = Task { await trigger.wait(upTo: .seconds(600)) }
        try? await Task.sleep(for: .milliseconds(50))
        trigger.requestResume()
        await waiting.value                                // woken, not after 600 s
        let taken = trigger.take()
        #expect(taken.resume && taken.repos.isEmpty)
        #expect(!trigger.take().resume, "taken once")
        await trigger.wait(upTo: .milliseconds(10))        // nothing asked: the timeout ends it
        #expect(trigger.take().repos.isEmpty)
    }
}
