import AllegroTestSupport
import AllegroPosix
import AllegroWire
import Foundation
import Testing

/// Random damage aimed at the real relay: 2,000 connections send mutated protocol
/// streams (bytes flipped, cut, repeated, spliced), before and after a valid handshake. The relay
/// must keep running and keep serving everyone else, with nothing accepted lost.
@Suite struct ChaosTests {
    static let vectors: [[UInt8]] = {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("protocol/vectors")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".bin") }.sorted().compactMap { try? [UInt8](Data(contentsOf: directory.appendingPathComponent($0))) }
    }()

    static func mutate(_ input: [UInt8], _ random: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        for _ in 0 ..< 1 + Int(random.next() % 4) {
            guard !bytes.isEmpty else { break }
            let at = Int(random.next() % UInt64(bytes.count))
            switch random.next() % 5 {
            case 0: bytes[at] ^= UInt8(truncatingIfNeeded: 1 << (random.next() % 8))
            case 1: bytes[at] = UInt8(truncatingIfNeeded: random.next())
            case 2: bytes.removeSubrange(at...)
            case 3: bytes.insert(contentsOf: bytes[at...].prefix(16), at: at)
            default: bytes += vectors[Int(random.next() % UInt64(vectors.count))]
            }
        }
        return bytes
    }

    @Test func mutatedStreamsNeverHurtTheRelay() throws {
        #expect(Self.vectors.count >= 40)
        let relay = try RelayProcess(["--durable", "timmy", "--set", "handshake_timeout_ms=300", "--set", "heartbeat_ms=100",
                                      "--set", "idle_timeout_ms=500"])
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        var random = SeededGenerator(seed: 2026)
        var clients: [RawClient] = []
        for round in 0 ..< 2000 {
            let client = try RawClient(relay.address)
            if round % 2 == 1 {
                // Past the handshake first, so the damage reaches the producer or collector paths.
                try client.hello(round % 4 == 1 ? .producer : .collector, id: "chaos-\(round)")
            }
            let stream = Self.mutate(Self.vectors[Int(random.next() % UInt64(Self.vectors.count))], &random)
            try? client.send(stream)
            clients.append(client)
            if clients.count >= 50 { clients.removeFirst(25) }
        }
        // Every damaged connection ends by itself (ERROR, or a timeout for a stream cut short).
        for client in clients { _ = try client.errorsUntilClosed(timeout: 5) }
        let allClosed = clients.allSatisfy { $0.closedByPeer }
        #expect(allClosed)
        #expect(relay.isRunning)
        try good.publishAndVerify(otherRecords: nil)
        #expect(relay.stop() == 0, "and it still shuts down cleanly")
    }
}
