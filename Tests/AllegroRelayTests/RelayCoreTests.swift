@testable import AllegroRelay
import AllegroSpill
import AllegroWire
import Testing

/// The relay core driven frame by frame in-process: fake connections, a spill whose fsync the
/// test performs, scripted replays. Each test states the interleaving it pins down.
@Suite struct RelayCoreTests {
    private func producer(_ harness: CoreHarness, id: String = "p1") -> Peer {
        let peer = harness.connect()
        peer.hello(.producer, id: id)
        #expect(peer.answers() == [.welcome])
        return peer
    }

    private func collector(_ harness: CoreHarness, from start: StartPosition = .earliest, name: String = "",
                           credit: UInt32 = 10_000, live: Bool = false) -> Peer {
        let peer = harness.connect()
        peer.hello(.collector, id: "c")
        peer.send(.subscribe(start: start, credit: credit, name: name, live: live))
        return peer
    }

    // MARK: Producers

    @Test func aRecordIsAcknowledgedOnlyOnceTheSpillHasFsyncedIt() {
        let harness = CoreHarness()
        let peer = producer(harness)
        peer.publish(count: 3)
        #expect(peer.answers() == [], "nothing is fsync'd yet")
        harness.fsync(through: 2)
        #expect(peer.answers() == [.ack(2)])
        harness.fsync(through: 3)
        #expect(peer.answers() == [.ack(3)])
    }

    @Test func theSpillIsToldOfAppendedRecordsOncePerPassAndNotForAnAck() {
        let harness = CoreHarness()
        let peer = producer(harness)
        #expect(harness.spill.appendedCalls == 0, "a HELLO appends nothing")
        peer.publish(count: 3)
        #expect(harness.spill.appendedCalls == 1, "one pass, one wake-up for its three records")
        harness.fsync(through: 3)
        #expect(peer.answers() == [.ack(3)])
        #expect(harness.spill.appendedCalls == 1, "the ACK pass after the fsync appended nothing")
        peer.publish(count: 1)
        #expect(harness.spill.appendedCalls == 2)
    }

    @Test func resentRecordsAreDroppedAndAckedWithoutNewNumbers() {
        let harness = CoreHarness()
        let first = producer(harness)
        first.publish(count: 3)
        harness.fsyncAll()
        #expect(first.answers() == [.ack(3)])
        // The producer reconnects and resends 2 and 3 with a new one.
        harness.core.retire(first.connection)
        let again = producer(harness)
        again.publish(sequences: [2, 3, 4])
        #expect(harness.core.ring.head == 5, "only producer sequence 4 got a relay sequence (4)")
        #expect(harness.core.traffic.duplicates == 2)
        #expect(again.answers() == [.ack(3)], "duplicates of safe records are acked at once")
        harness.fsyncAll()
        #expect(again.answers() == [.ack(4)])
    }

    @Test func marksFromAnEarlierRunMakeItsRecordsDuplicates() {
        let start = CoreStart(firstSequence: 101, reservedThrough: 1 << 20,
                              marks: [ProducerMark(producer: Array("p1".utf8), producerSequence: 7, relaySequence: 100)])
        let harness = CoreHarness(start: start)
        let peer = producer(harness)
        peer.publish(sequences: [6, 7, 8])
        #expect(harness.core.ring.head == 102, "only 8 is new; it gets the run's first number, 101")
        #expect(peer.answers() == [.ack(7)], "6 and 7 were safe in the earlier run")
        harness.fsyncAll()
        #expect(peer.answers() == [.ack(8)])
    }

    @Test func aFullRingPausesTheProducerMidBatchAndTheRestFollowsAfterTheFsync() {
        let harness = CoreHarness { $0.ringRecords = 8; $0.ringBytes = 4096 }
        let peer = producer(harness)
        peer.publish(count: 12)
        #expect(peer.connection.readPaused, "the ring holds 8 records the spill has not fsync'd")
        #expect(harness.core.ring.head == 9)
        #expect(peer.answers() == [])
        // The fsync frees the ring; the interrupted batch goes on where it stopped.
        harness.fsyncAll()
        #expect(!peer.connection.readPaused)
        #expect(harness.core.ring.head == 13)
        #expect(peer.answers() == [.ack(8)])
        harness.fsyncAll()
        #expect(peer.answers() == [.ack(12)])
        #expect(harness.spilled.keys.sorted() == Array(1 ... 12))
    }

    @Test func aFailedReservationPausesIngestUntilTheStateDatabaseAcceptsWrites() {
        let harness = CoreHarness(start: CoreStart(firstSequence: 1, reservedThrough: 2))
        harness.reservation.failing = true
        let peer = producer(harness)
        peer.publish(count: 4)
        #expect(harness.core.ring.head == 3, "numbers beyond the reservation are never handed out")
        #expect(peer.connection.readPaused)
        harness.reservation.failing = false
        harness.core.resume(peer.connection, now: harness.now)
        #expect(harness.core.ring.head == 5)
        #expect(harness.reservation.through == 2 + ResumePoint.reservationChunk)
    }

    @Test func aNewerHelloForTheSameProducerEndsTheOlderConnection() {
        let harness = CoreHarness()
        let older = producer(harness)
        _ = producer(harness)
        #expect(older.answers() == [.error("PRODUCER_REPLACED")])
        #expect(older.connection.isClosing)
    }

    @Test func goodbyeIsAnsweredOnlyAfterTheAcksItIsOwed() {
        let harness = CoreHarness()
        let peer = producer(harness)
        peer.publish(count: 2)
        peer.send(.goodbye)
        #expect(peer.answers() == [])
        harness.fsyncAll()
        #expect(peer.answers() == [.ack(2), .goodbye])
    }

    // MARK: Collectors

    @Test func aDurableCollectorIsGivenOnlyFsyncedRecordsAndALiveTailEverything() {
        let harness = CoreHarness { $0.durableCollectors = ["timmy"] }
        let source = producer(harness)
        source.publish(count: 3)
        let durable = collector(harness, name: "timmy")
        let live = collector(harness, live: true)
        durable.fill()
        live.fill()
        #expect(durable.answers() == [.welcome, .subscribed(first: 1, head: 4, committed: 0)])
        #expect(live.answers().delivered == [1, 2, 3])
        // Spill progress between two fills: the durable view moves with it.
        harness.fsync(through: 2)
        durable.fill()
        #expect(durable.answers().delivered == [1, 2])
        harness.fsyncAll()
        durable.fill()
        #expect(durable.answers().delivered == [3])
    }

    @Test func everyStartPositionPicksItsFirstRecord() {
        let harness = CoreHarness { $0.durableCollectors = ["timmy"] }
        let source = producer(harness)
        source.publish(count: 5)
        harness.fsyncAll()
        let cases: [(StartPosition, String, UInt64)] = [(.earliest, "", 1), (.latest, "", 6), (.sequence(3), "", 3), (.committed, "timmy", 1)]
        for (start, name, first) in cases {
            let peer = collector(harness, from: start, name: name)
            #expect(peer.answers().contains(.subscribed(first: first, head: 6, committed: 0)), "\(start)")
            peer.fill()
            #expect(peer.answers().delivered == (first < 6 ? Array(first ... 5) : []), "\(start)")
            harness.core.retire(peer.connection)
        }
        let outside = collector(harness, from: .sequence(7))
        #expect(outside.answers().control.last == .error("CURSOR_UNAVAILABLE"))
        let unknown = collector(harness, name: "nobody")
        #expect(unknown.answers().control.last == .error("UNKNOWN_COLLECTOR"))
    }

    @Test func committedIsAnsweredOnceTheCursorIsSavedAndResumesAfterIt() {
        let harness = CoreHarness { $0.durableCollectors = ["timmy"] }
        let source = producer(harness)
        source.publish(count: 4)
        harness.fsyncAll()
        let timmy = collector(harness, name: "timmy")
        timmy.fill()
        #expect(timmy.answers().delivered == [1, 2, 3, 4])
        timmy.send(.commit(through: 3))
        #expect(harness.spill.commits["timmy"] == 3)
        #expect(timmy.answers() == [], "COMMITTED waits for the save")
        harness.saveCursors()
        #expect(timmy.answers() == [.committed(3)])
        timmy.send(.commit(through: 9))
        #expect(timmy.answers() == [.error("COMMIT_OUT_OF_RANGE")])
        // The next subscription from its committed cursor starts after it.
        let resumed = collector(harness, from: .committed, name: "timmy")
        #expect(resumed.answers().contains(.subscribed(first: 4, head: 5, committed: 3)))
    }

    @Test func anEphemeralSubscriptionCannotCommit() {
        let harness = CoreHarness()
        let tail = collector(harness)
        tail.send(.commit(through: 0))
        #expect(tail.answers().control.last == .error("NOT_PERMITTED"))
    }

    @Test func creditBoundsWhatIsDelivered() {
        let harness = CoreHarness()
        let source = producer(harness)
        source.publish(count: 5)
        harness.fsyncAll()
        let tail = collector(harness, credit: 2)
        tail.fill()
        #expect(tail.answers().delivered == [1, 2])
        tail.send(.credit(10))
        tail.fill()
        #expect(tail.answers().delivered == [3, 4, 5])
    }

    // MARK: Replays

    /// 40 records through a ring of 8: the first 32 are only in the spill.
    private func spilledHarness(durable: Bool = false) -> CoreHarness {
        let harness = CoreHarness {
            $0.ringRecords = 8
            $0.ringBytes = 4096
            if durable { $0.durableCollectors = ["timmy"] }
        }
        let source = producer(harness)
        for _ in 0 ..< 40 {
            source.publish(count: 1)
            harness.fsyncAll()
        }
        #expect(harness.core.ring.head == 41)
        #expect(harness.core.ring.tail > 30)
        return harness
    }

    @Test func aReplayHandsOverToTheRingWithNoGapAndNoDuplicate() throws {
        let harness = spilledHarness()
        let tail = collector(harness, from: .sequence(1))
        tail.fill()
        let replay = try #require(harness.replays.opened.first)
        #expect(replay.from == 1 && !replay.live)
        var delivered = tail.answers().delivered
        // Blocks of 10 overlap what the ring still holds; the core joins the ring where they end.
        for _ in 0 ..< 4 {
            replay.serve(records: 10)
            tail.fill()
            delivered += tail.answers().delivered
        }
        replay.finish()
        tail.fill()
        delivered += tail.answers().delivered
        #expect(delivered == Array(1 ... 40))
        #expect(replay.recycled == 4, "every chunk is given back")
    }

    @Test func aReplayThatEndsBehindTheRingReadsAgain() throws {
        let harness = spilledHarness()
        let tail = collector(harness, from: .sequence(1))
        tail.fill()
        let first = try #require(harness.replays.opened.first)
        first.serve(records: 5)
        // The spill had published only through 5 when this replay read (progress raced it).
        first.finish(readThrough: 5)
        tail.fill()
        #expect(harness.replays.opened.count == 2, "the cursor (6) is still older than the ring: a second replay")
        let second = harness.replays.opened[1]
        #expect(second.from == 6)
        // It reads from the start of the block holding 6: 1 ... 5 again, which the core drops.
        second.serve(records: 100)
        second.finish()
        tail.fill()
        #expect(tail.answers().delivered == Array(1 ... 40))
    }

    @Test func retentionRacingAReplayIsCountedOnceForADurableCollector() throws {
        let harness = spilledHarness(durable: true)
        let timmy = collector(harness, from: .committed, name: "timmy")
        timmy.fill()
        let replay = try #require(harness.replays.opened.first)
        replay.serve(records: 5)
        timmy.fill()
        #expect(timmy.answers().delivered == [1, 2, 3, 4, 5])
        // Retention removes 6 ... 20 before the replay reads them.
        harness.removeSpilled(through: 20)
        replay.serve(records: 100)
        replay.finish()
        timmy.fill()
        let answers = timmy.answers()
        #expect(answers.delivered == Array(21 ... 40))
        #expect(answers.control.isEmpty, "lost records are not SKIPped: SKIP means never assigned")
        #expect(harness.spill.forcedRecords == 15)
        // Meeting the same gap again (a reconnect) counts nothing more.
        harness.core.retire(timmy.connection)
        let again = collector(harness, from: .sequence(harness.spill.oldestSpilledSequence ?? 0), name: "timmy")
        again.fill()
        #expect(harness.spill.forcedRecords == 15)
    }

    @Test func numbersAnEarlierRunNeverAssignedAreSkipped() throws {
        // The earlier run spilled 1 ... 4, had reserved through 10, and crashed.
        let earlier = CoreHarness()
        producer(earlier).publish(count: 4)
        earlier.fsyncAll()
        let start = CoreStart(firstSequence: 11, reservedThrough: 1 << 20, skips: SkippedSequences([5 ... 10]))
        let harness = CoreHarness(start: start, spilled: earlier.spilled)
        let source = producer(harness)
        source.publish(count: 2)
        harness.fsyncAll()
        // From inside the skip: no spill read is needed.
        let inside = collector(harness, from: .sequence(5))
        inside.fill()
        let skipped = inside.answers()
        #expect(skipped.control.contains(.skip(5, 10)))
        #expect(skipped.delivered == [11, 12])
        #expect(harness.replays.opened.isEmpty)
        // From the start: the replay ends at 4, and the skip follows it.
        let tail = collector(harness, from: .earliest)
        tail.fill()
        let replay = try #require(harness.replays.opened.first)
        replay.serve(records: 10)
        replay.finish()
        tail.fill()
        let answers = tail.answers()
        #expect(answers.delivered == [1, 2, 3, 4, 11, 12])
        #expect(answers.control.contains(.skip(5, 10)))
    }

    @Test func aCollectorThatLeavesMidReplayCancelsIt() throws {
        let harness = spilledHarness()
        let tail = collector(harness, from: .sequence(1))
        tail.fill()
        let replay = try #require(harness.replays.opened.first)
        harness.core.retire(tail.connection)
        #expect(replay.cancelled)
    }

    // MARK: Bad input and timers

    @Test func aCollectorMayNotPublishAndAProducerMayNotSubscribe() {
        let harness = CoreHarness()
        let source = producer(harness)
        source.send(.subscribe(start: .earliest, credit: 1, name: "", live: false))
        #expect(source.answers() == [.error("NOT_PERMITTED")])
        let tail = collector(harness)
        tail.publish(count: 1)
        #expect(tail.answers().control.last == .error("NOT_PERMITTED"))
        #expect(harness.core.ring.head == 1)
    }

    @Test func garbageBeforeHelloEndsOnlyThatConnection() {
        let harness = CoreHarness()
        let source = producer(harness)
        let stranger = harness.connect()
        stranger.deliver(bytes: [0, 0, 0, 1, 0xEE])
        #expect(stranger.answers().first.map { if case .error = $0 { true } else { false } } == true)
        #expect(stranger.connection.isClosing)
        source.publish(count: 1)
        harness.fsyncAll()
        #expect(source.answers() == [.ack(1)])
    }

    @Test func theHandshakeAndIdleTimeoutsFollowTheClockTheCallerPasses() {
        let harness = CoreHarness { $0.handshakeTimeoutMillis = 100; $0.idleTimeoutMillis = 1_000; $0.heartbeatMillis = 400 }
        let silent = harness.connect()
        let source = producer(harness)
        harness.core.sweep(silent.connection, now: harness.now.monotonicNanos + 99_000_000)
        #expect(!silent.connection.isClosing)
        harness.core.sweep(silent.connection, now: harness.now.monotonicNanos + 100_000_000)
        #expect(silent.answers() == [.error("HANDSHAKE_TIMEOUT")])
        harness.core.sweep(source.connection, now: harness.now.monotonicNanos + 500_000_000)
        #expect(source.answers() == [.ping])
        harness.core.sweep(source.connection, now: harness.now.monotonicNanos + 1_000_000_000)
        #expect(source.answers() == [.error("IDLE_TIMEOUT")])
    }
}
