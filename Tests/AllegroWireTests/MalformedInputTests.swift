import AllegroWire
import Testing

@Suite struct MalformedInputTests {
    /// Every prefix of a valid stream either decodes as far as it goes or reports truncation.
    @Test func everyTruncationIsReported() throws {
        let out = OutboundBuffer()
        out.append(.hello(role: .producer, clientID: "p", token: "t"))
        let boundary = out.count
        let mark = out.beginBatch(.publish)
        try TestRecord(producerSequence: 1, eventTime: 2, session: [115], kind: [107], contentType: [], payload: [1, 2, 3])
            .appendPublish(to: out)
        out.endBatch(mark, count: 1)
        let stream = out.bytes
        for cut in 1 ..< stream.count {
            let outcome = DecodeOutcome.decode(Array(stream[..<cut]), limits: .standard)
            if cut == boundary {
                #expect(outcome.error == nil && outcome.frames.count == 1, "a cut between frames is a valid stream")
            } else {
                #expect(outcome.error?.kind == "truncated", "cut at \(cut)")
                #expect(outcome.frames.count == (cut > boundary ? 1 : 0))
            }
        }
    }

    /// Random single-byte mutations and random garbage never trap; each outcome is frames or a typed error.
    @Test func mutationsNeverTrap() throws {
        var rng = SplitMix(state: 99)
        let out = OutboundBuffer()
        out.append(.hello(role: .collector, clientID: "timmy", token: "x"))
        out.append(.subscribe(start: .sequence(5), credit: 10, name: "timmy"))
        let mark = out.beginBatch(.publish)
        for sequence in 1 ... 5 as ClosedRange<UInt64> {
            try TestRecord.random(sequence: sequence, using: &rng).appendPublish(to: out)
        }
        out.endBatch(mark, count: 5)
        let stream = out.bytes
        var errors = 0
        for _ in 0 ..< 3000 {
            var mutated = stream
            for _ in 0 ... Int(rng.next() % 3) {
                mutated[Int(rng.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            let outcome = DecodeOutcome.decode(mutated, limits: .standard, chunks: [1 + Int(rng.next() % 64)])
            if outcome.error != nil { errors += 1 }
        }
        #expect(errors > 0, "some mutations must be caught")
        for _ in 0 ..< 2000 {
            let garbage = (0 ..< Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = DecodeOutcome.decode(garbage, limits: .handshake)
        }
    }

    /// A declared length over the limit is refused from the prefix alone, before buffering the body.
    @Test func oversizedLengthNeverAllocates() throws {
        let buffer = InboundBuffer(limits: .standard, initialCapacity: 64)
        let prefix: [UInt8] = [0xFF, 0xFF, 0xFF, 0x7F]
        var caught: WireError?
        prefix.withUnsafeBytes { bytes in
            do throws(WireError) { try buffer.decodeAll(bytes) { _ in } } catch { caught = error }
        }
        #expect(caught == .frameTooLarge(length: 0x7FFF_FFFF, limit: DecodeLimits.standard.maxFrameLength))
        #expect(buffer.capacity == 64)
    }

    /// The buffer grows only to the declared length of a frame that passed the limit check.
    @Test func growthIsBoundedByTheDeclaredLength() throws {
        let buffer = InboundBuffer(limits: .standard, initialCapacity: 64)
        let header: [UInt8] = [0x01, 0x10, 0x00, 0x00, 0x30]  // length 4097, type PING
        header.withUnsafeBytes { bytes in
            do throws(WireError) { try buffer.decodeAll(bytes) { _ in } } catch { Issue.record("\(error)") }
        }
        #expect(buffer.capacity >= 4101)
        #expect(buffer.capacity <= 8192)
    }

    @Test func handshakeLimitStopsLargeFirstFrames() {
        let out = OutboundBuffer()
        out.append(.hello(minVersion: 1, maxVersion: 1, role: .producer, clientID: "p",
                          token: [UInt8](repeating: 1, count: 1024)))
        out.append(.error(.internalError, String(repeating: "x", count: 1024)))
        let outcome = DecodeOutcome.decode(out.bytes, limits: .handshake)
        #expect(outcome.frames.count == 2)
        let big = OutboundBuffer()
        big.append(.ping(nonce: 1))
        let mark = big.beginBatch(.publish)
        try? TestRecord(producerSequence: 1, eventTime: 0, session: [], kind: [], contentType: [],
                        payload: [UInt8](repeating: 0, count: 5000)).appendPublish(to: big)
        big.endBatch(mark, count: 1)
        #expect(DecodeOutcome.decode(big.bytes, limits: .handshake).error?.kind == "frame_too_large")
    }
}
