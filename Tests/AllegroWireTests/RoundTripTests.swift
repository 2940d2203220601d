import AllegroWire
import Testing

/// A record with owned fields, for generating and comparing.
struct TestRecord: Equatable {
    var producerSequence: UInt64
    var eventTime: UInt64
    var session: [UInt8]
    var kind: [UInt8]
    var contentType: [UInt8]
    var payload: [UInt8]

    init(producerSequence: UInt64, eventTime: UInt64, session: [UInt8], kind: [UInt8], contentType: [UInt8], payload: [UInt8]) {
        self.producerSequence = producerSequence
        self.eventTime = eventTime
        self.session = session
        self.kind = kind
        self.contentType = contentType
        self.payload = payload
    }

    init(_ record: PublishedRecord) {
        self.init(producerSequence: record.producerSequence, eventTime: record.eventTimeNanos,
                  session: record.session.array, kind: record.kind.array,
                  contentType: record.contentType.array, payload: record.payload.array)
    }

    static func random(sequence: UInt64, using rng: inout SplitMix) -> TestRecord {
        func text(_ maxLength: Int) -> [UInt8] {
            let words = ["a", "sess", "é", "✓", "model_turn", "-", "7f3a", "tool"]
            var out = [UInt8]()
            let count = Int(rng.next() % UInt64(maxLength + 1))
            while out.count < count {
                let word = Array(words[Int(rng.next() % UInt64(words.count))].utf8)
                if out.count + word.count > 255 { break }
                out += word
            }
            return out
        }
        let payloadLength = Int(rng.next() % 600)
        return TestRecord(producerSequence: sequence, eventTime: rng.next(), session: text(40), kind: text(20),
                          contentType: text(30), payload: (0 ..< payloadLength).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
    }

    func appendPublish(to out: OutboundBuffer) throws {
        try session.withUnsafeBytes { session in
            try kind.withUnsafeBytes { kind in
                try contentType.withUnsafeBytes { contentType in
                    try payload.withUnsafeBytes { payload in
                        try out.appendPublishRecord(RecordHeader(producerSequence: producerSequence, eventTimeNanos: eventTime),
                                                    session: session, kind: kind, contentType: contentType, payload: payload)
                    }
                }
            }
        }
    }
}

/// A small deterministic generator so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct RoundTripTests {
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func publishAndDeliverSurviveRandomChunking(seed: UInt64) throws {
        var rng = SplitMix(state: seed)
        var sent: [TestRecord] = []
        let out = OutboundBuffer(initialCapacity: 64)
        var sequence: UInt64 = 0
        for _ in 0 ..< 20 {
            let mark = out.beginBatch(.publish)
            let count = 1 + Int(rng.next() % 30)
            for _ in 0 ..< count {
                sequence += 1 + rng.next() % 3
                let record = TestRecord.random(sequence: sequence, using: &rng)
                try record.appendPublish(to: out)
                sent.append(record)
            }
            out.endBatch(mark, count: count)
            out.append(.ping(nonce: sequence))
        }
        let stream = out.bytes

        // Decode under random chunking; re-encode each record in DELIVER layout as the relay would.
        var received: [TestRecord] = []
        var pings = 0
        let delivered = OutboundBuffer()
        let deliverMark = delivered.beginBatch(.deliver)
        var relaySequence: UInt64 = 100
        let inbound = InboundBuffer(limits: .standard, initialCapacity: 64)
        var offset = 0
        try stream.withUnsafeBytes { all in
            while offset < all.count {
                let size = min(1 + Int(rng.next() % 97), all.count - offset)
                try inbound.decodeAll(UnsafeRawBufferPointer(rebasing: all[offset ..< offset + size])) { frame in
                    switch frame {
                    case let .publish(batch):
                        for record in batch {
                            received.append(TestRecord(record))
                            relaySequence += 1
                            Array("producer-1".utf8).withUnsafeBytes { producer in
                                _ = try? delivered.appendDeliverRecord(relaySequence: relaySequence, ingestNanos: 5,
                                                                       producer: producer, record)
                            }
                        }
                    case .ping: pings += 1
                    default: Issue.record("unexpected frame \(frame.type.name)")
                    }
                }
                offset += size
            }
        }
        try inbound.finish()
        delivered.endBatch(deliverMark, count: received.count)
        #expect(received == sent)
        #expect(pings == 20)

        // The DELIVER batch decodes back to the same records with consecutive relay sequences.
        var expectedSequence: UInt64 = 101
        var index = 0
        let limits = DecodeLimits(maxFrameLength: Wire.absoluteMaxFrameLength, maxBatchRecords: 100_000)
        let deliverInbound = InboundBuffer(limits: limits)
        try delivered.bytes.withUnsafeBytes { bytes in
            try deliverInbound.decodeAll(bytes) { frame in
                guard case let .deliver(batch) = frame else { Issue.record("expected DELIVER"); return }
                #expect(batch.count == sent.count)
                for record in batch {
                    #expect(record.relaySequence == expectedSequence)
                    #expect(record.producer.equals("producer-1"))
                    #expect(record.ingestNanos == 5)
                    let original = sent[index]
                    #expect(record.producerSequence == original.producerSequence)
                    #expect(record.eventTimeNanos == original.eventTime)
                    #expect(record.session.array == original.session && record.kind.array == original.kind)
                    #expect(record.contentType.array == original.contentType && record.payload.array == original.payload)
                    expectedSequence += 1
                    index += 1
                }
            }
        }
        #expect(index == sent.count)
    }

    @Test func controlFramesRoundTrip() throws {
        let frames: [ControlFrame] = [
            .hello(minVersion: 1, maxVersion: 4, role: .collector, clientID: "timmy", token: Array("tok".utf8)),
            .welcome(Welcome(version: 1, maxFrameLength: 65536, maxBatchRecords: 10, heartbeatMillis: 1,
                             idleTimeoutMillis: 2, relayID: "r")),
            .ack(through: .max), .subscribe(start: .latest, credit: 7, name: ""),
            .subscribe(start: .sequence(9), credit: 0, name: "n"),
            .subscribed(Subscribed(firstSequence: 1, headSequence: 2, committed: 3)),
            .credit(.max), .commit(through: 4), .committed(through: 5), .skip(first: 1, last: 1),
            .ping(nonce: 0), .pong(nonce: 1), .goodbye, .error(.authFailed, "wrong token"),
        ]
        let out = OutboundBuffer()
        for frame in frames { out.append(frame) }
        var decoded: [String] = []
        try out.bytes.withUnsafeBytes { bytes in
            try InboundBuffer(limits: .standard).decodeAll(bytes) { decoded.append(FrameJSON.render($0)) }
        }
        #expect(decoded.count == frames.count)
        #expect(decoded[0] == #"{"type":"HELLO","min_version":1,"max_version":4,"role":"collector","client_id":"timmy","token_length":3}"#)
        #expect(decoded[4] == #"{"type":"SUBSCRIBE","start":"sequence","sequence":9,"credit":0,"name":"n"}"#)
        #expect(decoded[13] == #"{"type":"ERROR","code":5,"name":"AUTH_FAILED","message":"wrong token"}"#)
    }

    @Test func longTextIsClippedAtACharacterBoundary() throws {
        let out = OutboundBuffer()
        out.append(.error(.internalError, String(repeating: "é", count: 600)))
        var message = ""
        try out.bytes.withUnsafeBytes { bytes in
            try InboundBuffer(limits: .standard).decodeAll(bytes) { frame in
                if case let .error(_, text) = frame { message = text.string }
            }
        }
        #expect(message.utf8.count == 1024)
        #expect(message == String(repeating: "é", count: 512))
    }

    @Test func oversizedRecordFieldIsRefusedBeforeWriting() {
        let out = OutboundBuffer()
        let long = [UInt8](repeating: 65, count: 256)
        #expect(throws: RecordTooLarge.self) {
            try TestRecord(producerSequence: 1, eventTime: 0, session: long, kind: [], contentType: [], payload: [])
                .appendPublish(to: out)
        }
        #expect(out.count == 0)
    }
}
