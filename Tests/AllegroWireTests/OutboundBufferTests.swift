import AllegroWire
import Testing

/// The send buffer keeps frames intact when its bytes move while a frame is open: the owner
/// drains part of it, then encodes a frame large enough to make it compact or grow.
@Suite struct OutboundBufferTests {
    @Test(arguments: [0, 1, 5, 13, 40])
    func openFrameSurvivesCompactionAndGrowth(drained: Int) throws {
        let buffer = OutboundBuffer(initialCapacity: 64)
        buffer.append(.ping(nonce: 1))
        buffer.append(.ping(nonce: 2))
        buffer.append(.ping(nonce: 3))
        var sent: [UInt8] = Array(buffer.readable.prefix(drained))
        buffer.consume(drained)
        let mark = buffer.beginBatch(.publish)
        for sequence in 1 ... 20 as ClosedRange<UInt64> {
            let payload = [UInt8](repeating: UInt8(sequence), count: 30)
            try payload.withUnsafeBytes { bytes in
                try buffer.appendPublishRecord(RecordHeader(producerSequence: sequence, eventTimeNanos: 7),
                                               session: UnsafeRawBufferPointer(start: nil, count: 0),
                                               kind: UnsafeRawBufferPointer(start: nil, count: 0),
                                               contentType: UnsafeRawBufferPointer(start: nil, count: 0), payload: bytes)
            }
        }
        #expect(buffer.size(since: mark) == 9 + 20 * (24 + 30))
        buffer.endBatch(mark, count: 20)
        buffer.append(.ack(through: 9))
        sent += buffer.bytes

        let inbound = InboundBuffer(limits: .standard)
        var seen: [String] = []
        try sent.withUnsafeBytes { bytes in
            try inbound.decodeAll(bytes) { frame in
                if case let .publish(batch) = frame {
                    seen.append("PUBLISH \(batch.count) \(batch.map(\.producerSequence) == Array(1 ... 20))")
                } else {
                    seen.append(FrameJSON.render(frame))
                }
            }
        }
        try inbound.finish()
        #expect(seen == [#"{"type":"PING","nonce":1}"#, #"{"type":"PING","nonce":2}"#, #"{"type":"PING","nonce":3}"#,
                         "PUBLISH 20 true", #"{"type":"ACK","through":9}"#])
    }
}
