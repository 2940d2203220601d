import AllegroTestSupport
import AllegroClient
import AllegroPosix
import AllegroWire
import Foundation
import Testing

/// Protocol rules the relay enforces, driven by raw frames and the Swift clients.
@Suite struct ProtocolBehaviourTests {
    func address(_ relay: RelayProcess) throws -> [SocketAddress] { [try SocketAddress(parsing: relay.address)] }

    func collector(_ relay: RelayProcess, start: StartPosition = .earliest, name: String = "", window: UInt32 = 4096) throws -> Collector {
        var options = CollectorOptions(relays: try address(relay))
        options.start = start
        options.name = name
        options.window = window
        return try Collector(options)
    }

    /// Reads `count` records, returning (relay sequence, producer sequence, payload).
    func take(_ collector: Collector, _ count: Int) throws -> [(UInt64, UInt64, String)] {
        var taken: [(UInt64, UInt64, String)] = []
        while taken.count < count {
            guard let event = try collector.next(timeoutMillis: 5000) else { break }
            if case let .record(record) = event {
                taken.append((record.relaySequence, record.producerSequence, record.payload.string))
            }
        }
        return taken
    }

    @Test func resentDuplicatesAreDroppedAndAcked() throws {
        let relay = try RelayProcess()
        let producer = try RawClient(relay.address)
        try producer.hello(.producer, id: "dup")
        try producer.send(RawClient.publish(first: 1, count: 3))
        #expect(try producer.receive(until: { $0.json == #"{"type":"ACK","through":3}"# }, timeout: 5).last?.json == #"{"type":"ACK","through":3}"#)
        // A reconnecting producer resends 2 and 3 along with new records 4 and 5.
        let again = try RawClient(relay.address)
        try again.hello(.producer, id: "dup")
        try again.send(RawClient.publish(first: 2, count: 4))
        #expect(try again.receive(until: { $0.json == #"{"type":"ACK","through":5}"# }, timeout: 5).last?.json == #"{"type":"ACK","through":5}"#)
        let records = try take(try collector(relay), 5)
        #expect(records.map(\.0) == [1, 2, 3, 4, 5])
        #expect(records.map(\.1) == [1, 2, 3, 4, 5])
        #expect(records.map(\.2) == (1 ... 5).map { "raw-\($0)" })
        // Nothing else arrives: the duplicates were not sequenced.
        let late = try collector(relay, start: .sequence(6))
        #expect(try late.next(timeoutMillis: 200) == nil)
    }

    @Test func acksComeFromTheSpillNotFromCollectors() throws {
        // Durable collectors that never connect do not hold acks back: records are acked once
        // they are fsync'd in the spill, and they wait there for the collectors.
        let relay = try RelayProcess(["--durable", "timmy", "--durable", "archive"])
        var options = ProducerOptions(relays: try address(relay), producerID: "spilled")
        options.batchRecords = 4
        let producer = try Producer(options)
        for index in 1 ... 10 { try Array("g\(index)".utf8).withUnsafeBytes { _ = try producer.publish(payload: $0) } }
        try producer.flush(timeoutMillis: 10_000)
        #expect(producer.ackedThrough == 10)
        let segments = try FileManager.default.contentsOfDirectory(atPath: relay.dataDirectory.appendingPathComponent("spill").path)
        #expect(segments.contains { $0.hasSuffix(".seg") })
        let timmy = try collector(relay, start: .committed, name: "timmy")
        #expect(try take(timmy, 10).map(\.2) == (1 ... 10).map { "g\($0)" })
    }

    @Test func durableNameTakenOverByNewerConnection() throws {
        let relay = try RelayProcess(["--durable", "timmy"])
        let older = try RawClient(relay.address)
        try older.hello(.collector, id: "old")
        try older.send(.subscribe(start: .earliest, credit: 10, name: "timmy"))
        #expect(try older.receive(until: { $0.type == .subscribed }, timeout: 5).last?.type == .subscribed)
        let newer = try collector(relay, name: "timmy")
        #expect(try older.errorsUntilClosed() == [ErrorCode.collectorBusy.rawValue])
        #expect(newer.subscription.firstSequence == 1)
    }

    @Test func aNewerConnectionWithTheSameProducerIDEndsTheOlderSoItsRecordsAreNeverAckedAsDuplicates() throws {
        let relay = try RelayProcess()
        let older = try RawClient(relay.address)
        _ = try older.hello(.producer, id: "shared")
        try older.send(RawClient.publish(first: 1, count: 5) { "old-\($0)" })
        #expect(try older.receive(until: { $0.json.contains("\"through\":5") }, timeout: 10).last?.type == .ack)

        // A second writer with the same id starts ahead of what the first has not sent yet (6 ...).
        let newer = try RawClient(relay.address)
        _ = try newer.hello(.producer, id: "shared")
        #expect(try older.errorsUntilClosed() == [ErrorCode.producerReplaced.rawValue])
        try newer.send(RawClient.publish(first: 10, count: 3) { "new-\($0)" })
        #expect(try newer.receive(until: { $0.json.contains("\"through\":12") }, timeout: 10).last?.type == .ack)

        let tail = try collector(relay, start: .earliest)
        #expect(try take(tail, 8).map(\.2) == (1 ... 5).map { "old-\($0)" } + (10 ... 12).map { "new-\($0)" })
    }

    @Test func aProducersGoodbyeIsAnsweredOnlyAfterTheAcksOfEverythingItSent() throws {
        let relay = try RelayProcess(["--http", "off"])
        let producer = try RawClient(relay.address)
        _ = try producer.hello(.producer, id: "leaving")
        // The last PUBLISH and GOODBYE in one write: the relay reads both before any fsync.
        let goodbye = OutboundBuffer()
        goodbye.append(.goodbye)
        try producer.send(RawClient.publish(first: 1, count: 500) + RawClient.publish(first: 501, count: 500) + goodbye.bytes)
        let answers = try producer.receive(timeout: 15)
        #expect(answers.last?.type == .goodbye, "\(answers)")
        let acks = answers.filter { $0.type == .ack }
        #expect(acks.last?.json.contains("\"through\":1000") == true, "every record acked before GOODBYE: \(answers)")
        #expect(answers.firstIndex { $0.type == .goodbye } == answers.count - 1)
    }

    @Test func aDurableCollectorsGoodbyeIsAnsweredAfterTheCommittedItIsOwed() throws {
        let relay = try RelayProcess(["--http", "off", "--durable", "timmy"])
        try TestTraffic.publish(relay, producer: "p", prefix: "r", count: 5)
        let timmy = try RawClient(relay.address)
        _ = try timmy.hello(.collector, id: "timmy")
        try timmy.send(.subscribe(start: .earliest, credit: 100, name: "timmy"))
        let delivered = try timmy.receive(until: { $0.type == .deliver && $0.json.contains("\"relay_seq\":5") }, timeout: 10)
        #expect(delivered.last?.type == .deliver, "\(delivered)")
        // The commit and GOODBYE in one write: the cursor save comes after both are read.
        try timmy.send(.commit(through: 5), .goodbye)
        let answers = try timmy.receive(timeout: 15)
        #expect(answers.map(\.type) == [.committed, .goodbye], "\(answers)")
        #expect(answers.first?.json.contains("\"through\":5") == true)
    }

    @Test func aRecordAsLargeAsOneDeliverFrameCanCarryIsAcceptedAndOneByteMoreIsRefusedAlone() throws {
        // max_frame limits a frame's length (type byte and body). A 200-byte producer id and empty
        // fields: as delivered a record is 40 + 200 + payload bytes, in a DELIVER of length 5 +
        // that; published it is 24 + payload, so a too-large one still leaves room in its PUBLISH.
        let maxFrame = 65_536
        let largest = maxFrame - 5 - 40 - 200
        let relay = try RelayProcess(["--http", "off", "--set", "max_frame_bytes=\(maxFrame)"])
        let producer = try RawClient(relay.address)
        _ = try producer.hello(.producer, id: String(repeating: "p", count: 200))
        try producer.send(RawClient.publish(first: 1, count: 2) { $0 == 1 ? "small-1" : String(repeating: "x", count: largest) })
        #expect(try producer.receive(until: { $0.json.contains("\"through\":2") }, timeout: 10).last?.type == .ack)

        try producer.send(RawClient.publish(first: 3, count: 3) { $0 == 4 ? String(repeating: "y", count: largest + 1) : "small-\($0)" })
        let answers = try producer.receive(timeout: 10)
        #expect(answers.compactMap(\.errorCode) == [ErrorCode.recordTooLarge.rawValue], "\(answers)")
        // The record before it was stored; the connection ended before its fsync, so it is acked
        // when the producer resends it on its next connection (as a duplicate).
        let again = try RawClient(relay.address)
        _ = try again.hello(.producer, id: String(repeating: "p", count: 200))
        try again.send(RawClient.publish(first: 3, count: 1) { "small-\($0)" })
        #expect(try again.receive(until: { $0.json.contains("\"through\":3") }, timeout: 10).last?.type == .ack)

        let tail = try collector(relay, start: .earliest)
        let records = try take(tail, 3)
        #expect(records.map(\.2.count) == [7, largest, 7] && records.last?.2 == "small-3", "\(records.map(\.0))")
        #expect(try tail.next(timeoutMillis: 1500) == nil, "the record after the refused one was not accepted")
    }

    @Test func subscriptionErrors() throws {
        let relay = try RelayProcess(["--durable", "timmy"])
        func refusal(_ start: StartPosition, name: String) throws -> [UInt16] {
            let client = try RawClient(relay.address)
            try client.hello(.collector)
            try client.send(.subscribe(start: start, credit: 1, name: name))
            return try client.errorsUntilClosed()
        }
        #expect(try refusal(.earliest, name: "nobody") == [ErrorCode.unknownCollector.rawValue])
        #expect(try refusal(.sequence(50), name: "") == [ErrorCode.cursorUnavailable.rawValue])

        let ephemeral = try RawClient(relay.address)
        try ephemeral.hello(.collector)
        try ephemeral.send(.subscribe(start: .latest, credit: 1, name: ""), .commit(through: 0))
        #expect(try ephemeral.errorsUntilClosed() == [ErrorCode.notPermitted.rawValue])

        let durable = try RawClient(relay.address)
        try durable.hello(.collector)
        try durable.send(.subscribe(start: .earliest, credit: 1, name: "timmy"), .commit(through: 5))
        #expect(try durable.errorsUntilClosed() == [ErrorCode.commitOutOfRange.rawValue])

        let twice = try RawClient(relay.address)
        try twice.hello(.collector)
        try twice.send(.subscribe(start: .earliest, credit: 1, name: ""), .subscribe(start: .earliest, credit: 1, name: ""))
        #expect(try twice.errorsUntilClosed() == [ErrorCode.unexpectedFrame.rawValue])

        let creditFirst = try RawClient(relay.address)
        try creditFirst.hello(.collector)
        try creditFirst.send(.credit(5))
        #expect(try creditFirst.errorsUntilClosed() == [ErrorCode.unexpectedFrame.rawValue])
    }

    @Test func creditBoundsWhatIsDelivered() throws {
        let relay = try RelayProcess()
        let producer = try RawClient(relay.address)
        try producer.hello(.producer, id: "credit")
        try producer.send(RawClient.publish(first: 1, count: 50))
        _ = try producer.receive(until: { $0.type == .ack }, timeout: 5)
        let client = try RawClient(relay.address)
        try client.hello(.collector)
        try client.send(.subscribe(start: .earliest, credit: 7, name: ""))
        let first = try client.receive(timeout: 0.5)
        let delivered = first.filter { $0.type == .deliver }.map { $0.json.components(separatedBy: "relay_seq").count - 1 }.reduce(0, +)
        #expect(delivered == 7, "no more than the credit granted")
        try client.send(.credit(100))
        let rest = try client.receive(timeout: 0.5)
        let more = rest.filter { $0.type == .deliver }.map { $0.json.components(separatedBy: "relay_seq").count - 1 }.reduce(0, +)
        #expect(more == 43)
    }

    @Test func idleCollectorAnsweringHeartbeatsStaysConnected() throws {
        let relay = try RelayProcess(["--set", "heartbeat_ms=100", "--set", "idle_timeout_ms=500"])
        let tail = try collector(relay, start: .latest)
        let quietUntil = Date().addingTimeInterval(1.5)
        while Date() < quietUntil { #expect(try tail.next(timeoutMillis: 100) == nil) }
        var options = ProducerOptions(relays: try address(relay), producerID: "late")
        options.batchRecords = 1
        let producer = try Producer(options)
        try Array("after the quiet".utf8).withUnsafeBytes { _ = try producer.publish(payload: $0) }
        try producer.flush()
        #expect(try take(tail, 1).map(\.2) == ["after the quiet"])
    }

    @Test func collectorThatOnlyReceivesATrickleStaysConnected() throws {
        // A window far larger than the records sent means the collector never grants credit:
        // the relay's PINGs (answered) keep it alive past several idle timeouts.
        let relay = try RelayProcess(["--set", "heartbeat_ms=100", "--set", "idle_timeout_ms=400"])
        let tail = try collector(relay, start: .latest, window: 1_000_000)
        let producer = try RawClient(relay.address)
        try producer.hello(.producer, id: "trickle")
        var received: [UInt64] = []
        for sequence in 1 ... 30 as ClosedRange<UInt64> {
            try producer.send(RawClient.publish(first: sequence, count: 1))
            _ = try producer.receive(timeout: 0.05)
            while let event = try tail.next(timeoutMillis: 20), case let .record(record) = event {
                received.append(record.producerSequence)
            }
        }
        received += try take(tail, 30 - received.count).map(\.1)
        #expect(received == Array(1 ... 30), "connected for 1.5 s, past three idle timeouts")
    }

    @Test func slowCollectorFallsBackToTheSpillAndCatchesUp() throws {
        // A 16 KiB ring holds about a hundred of these records; the collector takes one and
        // stalls while a thousand more arrive. Its next records come from the spill, then live.
        let relay = try RelayProcess(["--set", "max_frame_bytes=4096", "--set", "ring_bytes=16384", "--set", "spill_block_bytes=4096"])
        let producer = try RawClient(relay.address)
        try producer.hello(.producer, id: "flood")
        try producer.send(RawClient.publish(first: 1, count: 1))
        let slow = try collector(relay, start: .earliest, window: 1)
        #expect(try take(slow, 1).map(\.0) == [1])
        for batch in 0 ..< 50 {
            try producer.send(RawClient.publish(first: UInt64(2 + batch * 20), count: 20, payload: { "flood-\($0)-" + String(repeating: "x", count: 64) }))
        }
        let acks = try producer.receive(until: { $0.json == #"{"type":"ACK","through":1001}"# }, timeout: 10)
        #expect(acks.last?.json == #"{"type":"ACK","through":1001}"#)
        let rest = try take(slow, 1000)
        #expect(rest.map(\.0) == Array(2 ... 1001), "every record once, in order, no gap")
        #expect(rest.allSatisfy { $0.2 == "flood-\($0.1)-" + String(repeating: "x", count: 64) })
        // Then it is live again.
        try producer.send(RawClient.publish(first: 1002, count: 1))
        #expect(try take(slow, 1).map(\.0) == [1002])
    }

    @Test func producerResendsUnackedRecordsAfterReconnecting() throws {
        // The first relay is frozen (SIGSTOP) so nothing is acked, then killed; a second relay
        // on the same port gets every record from the producer's resend.
        let first = try RelayProcess()
        var options = ProducerOptions(relays: try address(first), producerID: "survivor")
        options.batchRecords = 10
        options.reconnectForMillis = 20_000
        let producer = try Producer(options)
        kill(first.running.process.processIdentifier, SIGSTOP)
        for index in 0 ..< 100 { try Array("s-\(index)".utf8).withUnsafeBytes { _ = try producer.publish(payload: $0) } }
        #expect(throws: ClientError.self) { try producer.flush(timeoutMillis: 300) }
        #expect(producer.unackedCount == 100)
        kill(first.running.process.processIdentifier, SIGKILL)
        first.running.process.waitUntilExit()
        let second = try RelayProcess(listen: first.address)
        try producer.flush(timeoutMillis: 20_000)
        #expect(producer.ackedThrough == 100 && producer.reconnects >= 1)
        let records = try take(try collector(second), 100)
        #expect(records.map(\.2) == (0 ..< 100).map { "s-\($0)" })
        #expect(records.map(\.1) == Array(1 ... 100))
    }
}
