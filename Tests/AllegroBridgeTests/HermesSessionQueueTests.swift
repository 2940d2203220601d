@testable import AllegroBridge
import Testing

/// Timmy's Hermes sessions as a state machine: one run per operation id, a bounded queue served
/// in order, one end per session, cancel by state, and results forgotten on time.
@Suite struct HermesSessionQueueTests {
    func queue(running: Int = 1, queued: Int = 2) -> HermesSessionQueue {
        HermesSessionQueue(maxRunning: running, maxQueued: queued, keepMillis: 1_000, maxKept: 3)
    }

    @Test func theSameOperationIdIsTheSameSessionAndAnotherPromptUnderItIsAConflict() throws {
        var queue = queue()
        let first = try queue.submit(id: "op-1", prompt: "hello", model: nil, atMillis: 0)
        let again = try queue.submit(id: "op-1", prompt: "hello", model: nil, atMillis: 5)
        #expect(again == first)
        #expect(queue.waiting == ["op-1"], "queued once")
        #expect(throws: HermesSessionQueue.Refusal.conflict) { try queue.submit(id: "op-1", prompt: "other", model: nil, atMillis: 6) }
        #expect(throws: HermesSessionQueue.Refusal.conflict) { try queue.submit(id: "op-1", prompt: "hello", model: "big", atMillis: 6) }
    }

    @Test func sessionsBeyondTheSlotsWaitInOrderAndTheQueueIsBounded() throws {
        var queue = queue(running: 1, queued: 2)
        for id in ["a", "b", "c"] { _ = try queue.submit(id: id, prompt: id, model: nil, atMillis: 0) }
        #expect(queue.startable(atMillis: 10).map(\.id) == ["a"])
        #expect(queue.startable(atMillis: 11).isEmpty, "one slot")
        #expect(throws: HermesSessionQueue.Refusal.queueFull) { try queue.submit(id: "d", prompt: "d", model: nil, atMillis: 12) }
        queue.end("a", .completed, atMillis: 20)
        let next = queue.startable(atMillis: 20)
        #expect(next.map(\.id) == ["b"])
        #expect(next.first?.startedMillis == 20)
        #expect(queue.sessions["b"]?.state == .running)
        _ = try queue.submit(id: "d", prompt: "d", model: nil, atMillis: 21)
        #expect(queue.waiting == ["c", "d"])
    }

    @Test func aSessionEndsOnceAndALaterEndOrUpdateChangesNothing() throws {
        var queue = queue()
        _ = try queue.submit(id: "a", prompt: "a", model: nil, atMillis: 0)
        _ = queue.startable(atMillis: 1)
        queue.end("a", .interrupted, error: "cancelled by Timmy", atMillis: 5)
        queue.end("a", .completed, atMillis: 6)
        queue.update("a") { $0.answer = "late" }
        #expect(queue.sessions["a"]?.state == .interrupted)
        #expect(queue.sessions["a"]?.endedMillis == 5)
        #expect(queue.sessions["a"]?.answer == nil)
        #expect(queue.running.isEmpty)
    }

    @Test func aQueuedSessionIsDroppedAtCancelAndARunningOneIsAskedToStop() throws {
        var queue = queue(running: 1, queued: 2)
        _ = try queue.submit(id: "a", prompt: "a", model: nil, atMillis: 0)
        _ = try queue.submit(id: "b", prompt: "b", model: nil, atMillis: 0)
        _ = queue.startable(atMillis: 1)
        #expect(queue.cancel("b", atMillis: 2) == .dropped)
        #expect(queue.sessions["b"]?.state == .interrupted)
        #expect(queue.waiting.isEmpty)
        #expect(queue.cancel("a", atMillis: 3) == .stop(runID: nil), "its run id is not known yet")
        queue.update("a") { $0.runID = "run_1" }
        #expect(queue.cancel("a", atMillis: 4) == .stop(runID: "run_1"))
        #expect(queue.sessions["a"]?.cancelRequested == true)
        #expect(queue.cancel("b", atMillis: 5) == .alreadyEnded)
        #expect(queue.cancel("zz", atMillis: 5) == .unknown)
    }

    @Test func finishedSessionsAreForgottenAfterTheirTimeAndBeyondTheLimitRunningOnesNever() throws {
        var queue = queue(running: 5, queued: 10)
        for (index, id) in ["a", "b", "c", "d", "e"].enumerated() { _ = try queue.submit(id: id, prompt: id, model: nil, atMillis: Int64(index)) }
        _ = queue.startable(atMillis: 10)
        for (index, id) in ["a", "b", "c", "d"].enumerated() { queue.end(id, .completed, atMillis: 100 + Int64(index)) }
        queue.forget(atMillis: 200)
        #expect(queue.sessions["a"] == nil, "four ended, three kept: the oldest goes")
        #expect(queue.sessions["b"] != nil && queue.sessions["e"] != nil)
        queue.forget(atMillis: 1_102)
        #expect(queue.sessions["b"] == nil && queue.sessions["c"] == nil, "kept 1000 ms")
        #expect(queue.sessions["d"] != nil)
        queue.forget(atMillis: 100_000)
        #expect(queue.sessions.keys.sorted() == ["e"], "a running session is never forgotten")
    }

    @Test func modelNamesAreShortPrintableAndWithoutSpaces() {
        #expect(HermesSessionQueue.isModelName("anthropic/claude-sonnet-4.5"))
        #expect(HermesSessionQueue.isModelName("gpt-4o:latest"))
        #expect(!HermesSessionQueue.isModelName(""))
        #expect(!HermesSessionQueue.isModelName("two words"))
        #expect(!HermesSessionQueue.isModelName(String(repeating: "m", count: 201)))
    }
}
