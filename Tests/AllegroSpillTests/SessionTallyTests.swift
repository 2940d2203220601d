import AllegroSpill
import Testing

/// The spill thread's per-session counts: runs, switches between known keys (which reuse their
/// entries and allocate nothing), and take() starting afresh.
@Suite struct SessionTallyTests {
    static func note(_ tally: inout SessionTally, _ sequence: UInt64, producer: String = "p", session: String, kind: String = "tool.call") {
        SpillFixture.record(sequence, producer: producer, session: session, kind: kind).withUnsafeBytes { tally.note($0) }
    }

    static func byKey(_ deltas: [SessionDelta]) -> [String: SessionDelta] {
        Dictionary(deltas.map { ("\($0.session)/\($0.kind)/\($0.producer)", $0) }) { first, _ in first }
    }

    @Test func sixtyFourInterleavedSessionsAreEachCountedWhole() {
        var tally = SessionTally()
        for sequence in UInt64(1) ... 6400 {
            Self.note(&tally, sequence, producer: "p\(sequence % 64)", session: "hermes-session-\(sequence % 64)")
        }
        let totals = Self.byKey(tally.take())
        #expect(totals.count == 64)
        for index in 0 ..< 64 {
            let delta = totals["hermes-session-\(index)/tool.call/p\(index)"]
            #expect(delta?.records == 100, "session \(index)")
            // ingest_ns is 1,000 + sequence (SpillFixture), so the first and last are known.
            let first = UInt64(index == 0 ? 64 : index), last = UInt64(index == 0 ? 6400 : 6336 + index)
            #expect(delta?.firstNanos == 1_000 + first && delta?.lastNanos == 1_000 + last, "session \(index)")
        }
    }

    @Test func theSameSessionWithAnotherKindOrProducerIsAnotherEntryAndErrorsAreCounted() {
        var tally = SessionTally()
        Self.note(&tally, 1, session: "s1", kind: "tool.call")
        Self.note(&tally, 2, session: "s1", kind: "tool_error")
        Self.note(&tally, 3, producer: "q", session: "s1", kind: "tool.call")
        Self.note(&tally, 4, session: "s1", kind: "tool.call")
        Self.note(&tally, 5, session: "s1", kind: "tool_error")
        let totals = Self.byKey(tally.take())
        #expect(totals["s1/tool.call/p"]?.records == 2)
        #expect(totals["s1/tool_error/p"]?.records == 2)
        #expect(totals["s1/tool_error/p"]?.errors == 2)
        #expect(totals["s1/tool.call/q"]?.records == 1)
        #expect(totals["s1/tool.call/p"]?.errors == 0)
    }

    @Test func aFieldBoundaryIsPartOfTheKeySoShiftedBytesAreAnotherSession() {
        // "ab"+"c" and "a"+"bc" have the same bytes in a row; the lengths keep them apart.
        var tally = SessionTally()
        Self.note(&tally, 1, session: "ab", kind: "c")
        Self.note(&tally, 2, session: "a", kind: "bc")
        Self.note(&tally, 3, session: "ab", kind: "c")
        let totals = Self.byKey(tally.take())
        #expect(totals["ab/c/p"]?.records == 2)
        #expect(totals["a/bc/p"]?.records == 1)
    }

    @Test func takeReturnsOnlyWhatCameSinceTheLastTake() {
        var tally = SessionTally()
        Self.note(&tally, 1, session: "s1")
        Self.note(&tally, 2, session: "s2")
        #expect(tally.take().map(\.records).reduce(0, +) == 2)
        Self.note(&tally, 3, session: "s2")
        let second = tally.take()
        #expect(second.count == 1 && second.first?.session == "s2" && second.first?.records == 1)
        #expect(tally.take().isEmpty)
    }

    /// Entries stay between takes while their session is busy (their strings are not made
    /// again) and go after a period without records: either way a take holds exactly that
    /// period's counts and time range.
    @Test func aSessionKeptBetweenTakesOrDroppedWhileIdleIsCountedFreshEachPeriod() throws {
        var tally = SessionTally()
        Self.note(&tally, 1, session: "s1")
        Self.note(&tally, 2, session: "s1")
        #expect(tally.take().map(\.records) == [2])
        Self.note(&tally, 3, session: "s1")
        let busy = try #require(tally.take().first)
        #expect(busy.records == 1 && busy.firstNanos == busy.lastNanos, "the kept entry starts from zero: \(busy)")
        #expect(tally.take().isEmpty, "an idle period reports nothing")
        #expect(tally.take().isEmpty)
        Self.note(&tally, 4, session: "s1")
        #expect(tally.take().map(\.records) == [1], "a dropped session counts again from its next record")
    }

    @Test func recordsWithoutASessionAreNotCounted() {
        var tally = SessionTally()
        Self.note(&tally, 1, session: "")
        #expect(tally.take().isEmpty)
    }
}
