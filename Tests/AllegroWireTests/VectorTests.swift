import AllegroWire
import Foundation
import Testing

@Suite struct VectorTests {
    static var vectors: [Vector] { (try? Vector.all()) ?? [] }

    @Test func vectorsArePresent() {
        #expect(Self.vectors.count >= 40, "protocol/vectors/index.json lists the vectors")
        let types = Set(Self.vectors.flatMap { $0.frames.compactMap { $0["type"] as? String } })
        for type in FrameType.allCases { #expect(types.contains(type.name), "a valid vector of type \(type.name)") }
    }

    @Test(arguments: vectors.map(\.name))
    func vectorDecodesAsDescribed(name: String) throws {
        let vector = try Vector.load(name)
        let limits = vector.limits ?? .standard
        for chunks in [[Int.max], [1], [3, 1, 7], [2, 5]] {
            let outcome = DecodeOutcome.decode(vector.bytes, limits: limits, chunks: chunks)
            #expect(outcome.frames == vector.frames, "\(name) frames, chunks \(chunks)")
            if let expected = vector.error {
                #expect(outcome.error?.kind == expected.kind, "\(name) error kind, chunks \(chunks)")
                if let code = expected.code {
                    #expect(outcome.error?.code?.name == code, "\(name) error code")
                } else {
                    #expect(expected.kind == "truncated" && outcome.error?.code == nil, "\(name): only a truncated stream has no ERROR code")
                }
                #expect(outcome.errorOffset == expected.offset, "\(name) error offset")
            } else {
                #expect(outcome.error == nil, "\(name) decodes without error, got \(String(describing: outcome.error))")
            }
        }
    }

    @Test func negotiationFollowsTheVectors() throws {
        for vector in Self.vectors where vector.negotiate != nil {
            let outcome = DecodeOutcome.decode(vector.bytes, limits: .standard)
            let negotiated = outcome.negotiated.first ?? nil
            if let version = vector.negotiate?["version"] as? Int {
                #expect(negotiated == UInt16(version), "\(vector.name)")
            } else {
                #expect(vector.negotiate?["error"] as? String == ErrorCode.unsupportedVersion.name)
                #expect(negotiated == nil, "\(vector.name) must not negotiate")
            }
        }
    }

    /// The Swift encoder writes the same bytes as the vectors' independent Python encoder.
    @Test func encoderMatchesVectorBytes() throws {
        let cases: [(String, ControlFrame)] = [
            ("ack", .ack(through: 10)),
            ("commit", .commit(through: 102)),
            ("committed", .committed(through: 102)),
            ("credit", .credit(512)),
            ("ping", .ping(nonce: 42)),
            ("pong", .pong(nonce: 42)),
            ("goodbye", .goodbye),
            ("skip", .skip(first: 200, last: 263)),
            ("subscribe_committed", .subscribe(start: .committed, credit: 4096, name: "timmy")),
            ("subscribe_sequence", .subscribe(start: .sequence(123_456_789), credit: 10, name: "timmy")),
            ("subscribe_earliest", .subscribe(start: .earliest, credit: 1000, name: "")),
            ("subscribe_live", .subscribe(start: .latest, credit: 64, name: "", live: true)),
            ("subscribed", .subscribed(Subscribed(firstSequence: 101, headSequence: 250, committed: 100))),
            ("hello_producer", .hello(role: .producer, clientID: "hermes-7f3a", token: "s3cret")),
            ("welcome", .welcome(Welcome(version: 1, maxFrameLength: 1 << 20, maxBatchRecords: 4096,
                                         heartbeatMillis: 5000, idleTimeoutMillis: 15000, relayID: "relay-1"))),
            ("error_frame", .error(.cursorUnavailable, "cursor 5 is older than the oldest record held (900)")),
        ]
        for (name, frame) in cases {
            let out = OutboundBuffer()
            out.append(frame)
            #expect(out.bytes == (try Vector.load(name)).bytes, "\(name)")
        }
    }
}
