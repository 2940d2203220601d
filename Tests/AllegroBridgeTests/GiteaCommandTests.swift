@testable import AllegroBridge
import Foundation
import Testing

/// The boundaries of Timmy's Gitea commands that need no Gitea: no implicit close, one outcome
/// per operation id.
@Suite struct GiteaCommandTests {
    @Test func closingKeywordsBecomeRefsAndKeepTheirReference() {
        #expect(ClosingKeywords.rewrite("Done; fixes #2") == "Done; Refs #2")
        #expect(ClosingKeywords.rewrite("Closes: timmy/home#12 and RESOLVED #3") == "Refs timmy/home#12 and Refs #3")
        #expect(ClosingKeywords.rewrite("fixed  #7\nclose #8") == "Refs  #7\nRefs #8")
        #expect(ClosingKeywords.rewrite("a prefix #4, the fixture #5, fix the bug, see #6") == "a prefix #4, the fixture #5, fix the bug, see #6")
        #expect(ClosingKeywords.rewrite("refixes #9 unfixed #10") == "refixes #9 unfixed #10")
    }

    @Test func anOperationIdIsJournaledOnceAndRefusedForAnotherCommand() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try BridgeStore(path: directory.appendingPathComponent("bridge.sqlite").path)
        #expect(try store.journal(operation: "op-1", kind: "comment", repo: "o/r", number: 2, request: "{}", nowMillis: 1) == .new)
        #expect(try store.journal(operation: "op-1", kind: "comment", repo: "o/r", number: 2, request: "{}", nowMillis: 2) == .pending)
        #expect(try store.pendingCommands().map(\.operation) == ["op-1"])
        try store.finish(operation: "op-1", state: "done", result: #"{"comment_id":5}"#, nowMillis: 3)
        #expect(try store.journal(operation: "op-1", kind: "comment", repo: "o/r", number: 2, request: "{}", nowMillis: 4)
            == .finished(state: "done", result: #"{"comment_id":5}"#))
        #expect(try store.journal(operation: "op-1", kind: "status", repo: "o/r", number: 2, request: "{}", nowMillis: 5)
            == .conflict(kind: "comment", repo: "o/r", number: 2))
        #expect(try store.pendingCommands().isEmpty)
    }

    @Test func aTriageSetsItsStatusBeforeItsReceiptAnnouncesIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try BridgeStore(path: directory.appendingPathComponent("bridge.sqlite").path)
        let issue = BridgeStore.Change(repo: "o/r", kind: "gitea.issue", id: 1, updatedAt: "2026-12-03T10:00:00Z", session: "o/r#1", payload: "{}")
        // Journaled in one transaction, in the same millisecond; the receipt's id sorts first.
        try store.enqueue([issue], nowMillis: 7) { _ in
            [.init(operation: "triage-receipt:o:r:1", kind: "comment", repo: "o/r", number: 1, request: "{}"),
             .init(operation: "triage-status:o:r:1", kind: "status", repo: "o/r", number: 1, request: "{}")]
        }
        #expect(try store.pendingCommands().map(\.operation) == ["triage-status:o:r:1", "triage-receipt:o:r:1"])
    }

    @Test func operationIdsAreCheckedAndTriageIdsPassTheCheck() throws {
        try GiteaCommands.checkOperation("op-1.2:x_y")
        try GiteaCommands.checkOperation(GiteaIntake.operation("triage-status", "timmy/home.site", 12))
        for bad in ["", "a b", "a/b", "a#1", String(repeating: "x", count: 129), "é"] {
            #expect(throws: CommandError.self) { try GiteaCommands.checkOperation(bad) }
        }
    }

    @Test func theTriageReceiptIsAnAllegroReport() throws {
        let receipt = try #require(GiteaCommands.receipt(repo: "o/r", number: 3, status: "triage"))
        #expect(receipt.hasPrefix("## ✅ Allegro Report\n**Task:** Triage of o/r#3"))
        #expect(receipt.contains("labelled status/triage"))
    }
}

/// Gitea's webhook signature, as Gitea computes it: the hex HMAC-SHA256 of the body.
@Suite struct GiteaWebhookTests {
    @Test func aDeliveryCountsOnlyWithTheBodysHMACUnderTheSecret() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let body = Array("what do ya want for nothing?".utf8)
        let mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        #expect(GiteaWebhook.valid(signature: mac, body: body, secret: Array("Jefe".utf8)))
        #expect(GiteaWebhook.valid(signature: mac.uppercased(), body: body, secret: Array("Jefe".utf8)))
        #expect(!GiteaWebhook.valid(signature: mac, body: body + [0x20], secret: Array("Jefe".utf8)))
        #expect(!GiteaWebhook.valid(signature: mac, body: body, secret: Array("jefe".utf8)))
        #expect(!GiteaWebhook.valid(signature: String(mac.dropLast()), body: body, secret: Array("Jefe".utf8)))
        #expect(!GiteaWebhook.valid(signature: "", body: body, secret: Array("Jefe".utf8)))
    }

    @Test func aDeliveryIdIsTakenOnce() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("webhook-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try BridgeStore(path: directory.appendingPathComponent("bridge.sqlite").path)
        #expect(try store.firstDelivery("d-1", nowMillis: 1))
        #expect(try !store.firstDelivery("d-1", nowMillis: 2))
        try store.forgetSeen(before: 10)
        #expect(try store.firstDelivery("d-1", nowMillis: 11), "forgotten after the retention")
    }
}
