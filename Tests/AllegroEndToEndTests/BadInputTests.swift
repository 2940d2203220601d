import AllegroTestSupport
import AllegroPosix
import AllegroWire
import Foundation
import Testing

/// Bad input against the real relay binary: each gets its ERROR frame and its connection
/// closes, and afterwards a good producer and collector still work with nothing lost.
@Suite struct BadInputTests {
    static let shortTimeouts = ["--set", "handshake_timeout_ms=400", "--set", "heartbeat_ms=100", "--set", "idle_timeout_ms=600"]

    func expectError(_ client: RawClient, _ code: ErrorCode, _ comment: Comment) throws {
        let errors = try client.errorsUntilClosed()
        #expect(errors == [code.rawValue], comment)
        #expect(client.closedByPeer, "the relay closes after the ERROR")
    }

    @Test func garbageInsteadOfHello() throws {
        let relay = try RelayProcess()
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        let client = try RawClient(relay.address)
        try client.send(Array("GET / HTTP/1.1\r\nHost: allegro\r\n\r\n".utf8))
        try expectError(client, .frameTooLarge, "an HTTP request is a huge length prefix")
        let binary = try RawClient(relay.address)
        try binary.send((0 ..< 64).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) })
        #expect(try binary.errorsUntilClosed().count == 1)
        try good.publishAndVerify()
        #expect(relay.isRunning)
    }

    @Test func frameLengthOverTheMaximum() throws {
        let relay = try RelayProcess(["--set", "max_frame_bytes=65536"])
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        let client = try RawClient(relay.address)
        try client.hello(.producer)
        // A PUBLISH header claiming 65537 + 1 bytes: refused on the length alone.
        try client.send([0x02, 0x00, 0x01, 0x00, FrameType.publish.rawValue])
        try expectError(client, .frameTooLarge, "length above max_frame")
        try good.publishAndVerify()
    }

    @Test func frameThatStopsHalfwayTimesOut() throws {
        let relay = try RelayProcess(Self.shortTimeouts)
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        // Half a HELLO, then silence: the handshake deadline closes it.
        let silentHello = try RawClient(relay.address)
        let hello = OutboundBuffer()
        hello.append(.hello(role: .producer, clientID: "half", token: ""))
        try silentHello.send(Array(hello.bytes.prefix(9)))
        // Half a PUBLISH after a good handshake, then silence: the idle timeout closes it.
        let silentPublish = try RawClient(relay.address)
        try silentPublish.hello(.producer, id: "half-publish")
        try silentPublish.send(Array(RawClient.publish(first: 1, count: 10).prefix(40)))
        try expectError(silentHello, .handshakeTimeout, "half a HELLO")
        try expectError(silentPublish, .idleTimeout, "half a PUBLISH")
        try good.publishAndVerify()
    }

    @Test func unknownFrameType() throws {
        let relay = try RelayProcess()
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        let client = try RawClient(relay.address)
        try client.hello(.collector)
        try client.send([0x01, 0x00, 0x00, 0x00, 0x7F])
        try expectError(client, .unknownFrameType, "type 0x7F")
        try good.publishAndVerify()
    }

    @Test func producerSubscribingAndCollectorPublishing() throws {
        let relay = try RelayProcess()
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        let producer = try RawClient(relay.address)
        try producer.hello(.producer, id: "sneaky")
        try producer.send(.subscribe(start: .earliest, credit: 10, name: ""))
        try expectError(producer, .notPermitted, "a producer subscribing")
        let collector = try RawClient(relay.address)
        try collector.hello(.collector)
        try collector.send(RawClient.publish(first: 1, count: 3))
        try expectError(collector, .notPermitted, "a collector publishing")
        try good.publishAndVerify()
    }

    @Test func wrongTokens() throws {
        let environment = ["ALLEGRO_PRODUCER_TOKEN": "p-secret", "ALLEGRO_COLLECTOR_TOKEN": "c-secret"]
        let relay = try RelayProcess(environment: environment)
        var good = GoodTraffic(relay.address, producerToken: "p-secret", collectorToken: "c-secret")
        try good.publishAndVerify()
        for (role, token) in [(Role.producer, "wrong"), (.producer, ""), (.collector, "p-secret"), (.producer, "c-secret"), (.collector, "c-secre")] {
            let client = try RawClient(relay.address)
            let answer = try client.hello(role, token: token)
            #expect(answer.compactMap(\.errorCode) == [ErrorCode.authFailed.rawValue], "\(role) with \(token.count)-byte token")
            #expect(try client.errorsUntilClosed().isEmpty && client.closedByPeer)
        }
        #expect(!relay.log.contains("p-secret") && !relay.log.contains("c-secret"), "tokens never logged")
        try good.publishAndVerify()
    }

    @Test func unexpectedFramesAndVersions() throws {
        let relay = try RelayProcess()
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        let early = try RawClient(relay.address)
        try early.send(.ping(nonce: 1))
        try expectError(early, .unexpectedFrame, "PING before HELLO")
        let future = try RawClient(relay.address)
        try future.send(.hello(minVersion: 2, maxVersion: 3, role: .producer, clientID: "future", token: []))
        try expectError(future, .unsupportedVersion, "versions 2 ... 3 only")
        let relayFrames = try RawClient(relay.address)
        try relayFrames.hello(.producer, id: "confused")
        try relayFrames.send(.ack(through: 1))
        try expectError(relayFrames, .unexpectedFrame, "a relay-only frame")
        let malformed = try RawClient(relay.address)
        try malformed.hello(.producer, id: "malformed")
        try malformed.send(Array(try Data(contentsOf: Self.vector("publish_sequence_order"))))
        try expectError(malformed, .malformedFrame, "sequences going backwards in a batch")
        try good.publishAndVerify()
    }

    @Test func connectionsBeyondTheLimit() throws {
        ProcessSetup.raiseDescriptorLimit()
        let limit = 40
        let relay = try RelayProcess(["--set", "max_connections=\(limit)"])
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        // Fill the relay, leaving room for the good producer and collector afterwards.
        var held: [RawClient] = []
        for index in 0 ..< limit - 2 {
            let client = try RawClient(relay.address)
            try client.hello(.collector, id: "held-\(index)")
            held.append(client)
        }
        // The two spare places, taken by idle sockets, then 1,000 more at once.
        var spare = try (0 ..< 2).map { _ in try RawClient(relay.address) }
        var extra: [RawClient] = []
        for _ in 0 ..< 1000 { extra.append(try RawClient(relay.address)) }
        var refused = 0
        for client in extra {
            let errors = try client.errorsUntilClosed(timeout: 10)
            if client.closedByPeer && errors.allSatisfy({ $0 == ErrorCode.tooManyConnections.rawValue }) { refused += 1 }
        }
        #expect(refused == 1000, "every connection beyond the limit is refused and closed")
        // The held connections still work.
        try held[0].send(.ping(nonce: 99))
        #expect(try held[0].receive(until: { $0.type == .pong }, timeout: 5).contains { $0.type == .pong })
        extra.removeAll()
        spare.removeAll()
        held.removeAll()
        usleep(200_000)
        try good.publishAndVerify()
    }

    @Test func clientThatSendsButNeverReads() throws {
        let relay = try RelayProcess()
        var good = GoodTraffic(relay.address)
        try good.publishAndVerify()
        let before = try Self.residentBytes(relay)
        // 64 MiB of PINGs whose PONGs are never read: the relay must stop reading this client
        // once its answers back up, instead of buffering them all.
        let greedy = try RawClient(relay.address)
        try greedy.hello(.producer, id: "greedy")
        let pings = OutboundBuffer()
        for nonce in 0 ..< 16 * 1024 { pings.append(.ping(nonce: UInt64(nonce))) }
        let chunk = pings.bytes
        var sent = 0
        var stalledSince: Date?
        while sent < 64 << 20 {
            let offset = sent % chunk.count
            let result = try chunk.withUnsafeBytes { try greedy.socket.send(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            if case let .transferred(count) = result, count > 0 {
                sent += count
                stalledSince = nil
            } else {
                if stalledSince == nil { stalledSince = Date() }
                if let stalledSince, Date().timeIntervalSince(stalledSince) > 1 { break }
                _ = try greedy.socket.wait(writable: true, timeoutMillis: 100)
            }
        }
        #expect(sent < 64 << 20, "the relay stopped reading a client that does not read: \(relay.log)")
        let after = try Self.residentBytes(relay)
        #expect(after - before < 32 << 20, "relay memory grew by \(after - before) bytes")
        try good.publishAndVerify()
    }

    /// The relay process's resident memory, from /proc.
    static func residentBytes(_ relay: RelayProcess) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(relay.running.process.processIdentifier)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    static func vector(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("protocol/vectors/\(name).bin")
    }
}
