import AllegroPosix
import AllegroWire
import Foundation

/// One system under test: Allegro, or a peer doing the same job. Producers send records whose
/// event time is their scheduled send time; the collector reports each record's event time.
protocol Peer: AnyObject {
    var name: String { get }
    func start(scratch: URL) throws
    func stop()
    func producer() throws -> PeerProducer
    func collector() throws -> PeerCollector
    /// CPU seconds the server process has used (nil for `direct`).
    var serverCPUSeconds: Double? { get }
}

/// Handed to one sender thread and used only there (hence `@unchecked Sendable` on each).
protocol PeerProducer: AnyObject, Sendable {
    /// Sends one message per event time (one frame or command each, written together).
    func send(_ eventTimes: UnsafeBufferPointer<UInt64>, payloadSize: Int) throws
}

/// Handed to one collector thread and used only there.
protocol PeerCollector: AnyObject, Sendable {
    /// Reads for up to `timeoutMillis`, calling `onRecord` with each record's event time.
    func poll(timeoutMillis: Int32, _ onRecord: (UInt64) -> Void) throws
}

// MARK: Allegro

/// `allegro`: the collector is given only fsync'd records (what Timmy's durable collector
/// gets). `allegro-live`: an ephemeral subscription with the live flag, ahead of the fsync.
final class AllegroPeer: Peer {
    let name: String
    let binary: String
    let extra: [String]
    let live: Bool
    /// Added to the relay's environment (the `allocs` scenario preloads its allocation counter).
    let environment: [String: String]
    /// A command the relay runs under, its arguments before the relay's path (the `instructions`
    /// scenario's `valgrind --tool=callgrind ...`); empty: the binary runs itself.
    let launcher: [String]
    /// Seconds to wait for the relay to listen (under valgrind it starts far slower).
    let listenerSeconds: Double
    private var server: Server?
    private(set) var address = ""
    private(set) var dataDirectory: URL?

    init(binary: String, extra: [String] = [], live: Bool = false, name: String? = nil, environment: [String: String] = [:],
         launcher: [String] = [], listenerSeconds: Double = 10) {
        self.binary = binary
        self.extra = extra
        self.live = live
        self.environment = environment
        self.launcher = launcher
        self.listenerSeconds = listenerSeconds
        self.name = name ?? (live ? "allegro-live" : "allegro")
    }

    func start(scratch: URL) throws {
        let data = scratch.appendingPathComponent("allegro-data-\(UUID().uuidString)")
        dataDirectory = data
        try start(data: data, port: try freePort(), log: scratch.appendingPathComponent("allegro.log"))
    }

    /// Starts (or restarts) on a given data directory and port.
    func start(data: URL, port: Int, log: URL) throws {
        address = "127.0.0.1:\(port)"
        dataDirectory = data
        let arguments = ["relay", "--listen", address, "--http", "off", "--data", data.path,
                         "--set", "log_level=warning",
                         // No alert or daily report of its own in the measured stream (the check counts records).
                         "--set", "alert_interval_ms=0"] + extra
        let executable = launcher.first ?? binary
        server = try Server("allegro", executable, launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [binary] + arguments,
                            log: log, environment: environment)
        try waitForListener(address, seconds: listenerSeconds)
    }

    func stop() { server?.stop() }
    func crash() { server?.stop(signal: SIGKILL) }
    var serverCPUSeconds: Double? { server?.cpuSeconds }
    /// The relay's process id (nil before the first start).
    var pid: Int32? { server?.pid }

    func producer() throws -> PeerProducer { try AllegroProducer(address, id: "bench-\(UUID().uuidString.prefix(8))") }
    func collector() throws -> PeerCollector { try WireCollector(allegro: address, live: live) }
}

/// Publishes to an Allegro relay (or, for `direct`, straight to the collector) in PUBLISH frames.
final class AllegroProducer: PeerProducer, @unchecked Sendable {
    let link: Link
    let outbound = OutboundBuffer(initialCapacity: 1 << 20)
    var sequence: UInt64 = 1
    var payloads = PayloadCycle()
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    /// Session and kind of every record sent (empty: none); the `allocs` scenario sets them as a
    /// Hermes producer would.
    var session: [UInt8] = []
    var kind: [UInt8] = []
    /// Most records per PUBLISH frame; a send of more writes several frames at once.
    var recordsPerFrame = 1024
    /// Whether a HELLO/WELCOME handshake is needed (not for `direct`).
    init(_ address: String, id: String, handshake: Bool = true) throws {
        link = try Link(address)
        sequence = Clock.wallNanos / 1000
        guard handshake else { return }
        outbound.append(.hello(role: .producer, clientID: id, token: ""))
        try link.send(outbound.readable)
        outbound.consume(outbound.count)
        let inbound = InboundBuffer(limits: .permissive)
        var welcomed = false
        while !welcomed {
            let space = inbound.writableSpace(minimum: 4096)
            inbound.didWrite(try link.receive(into: space, timeoutMillis: 5000))
            while let frame = try inbound.next() { if case .welcome = frame { welcomed = true } }
        }
    }

    deinit { scratch.deallocate() }

    func send(_ eventTimes: UnsafeBufferPointer<UInt64>, payloadSize: Int) throws {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        try session.withUnsafeBytes { session in
            try kind.withUnsafeBytes { kind in
                var index = 0
                while index < eventTimes.count {
                    let mark = outbound.beginBatch(.publish)
                    var count = 0
                    while index < eventTimes.count && count < recordsPerFrame {
                        try payloads.next(size: payloadSize) { body in
                            try outbound.appendPublishRecord(RecordHeader(producerSequence: sequence, eventTimeNanos: eventTimes[index]),
                                                             session: session, kind: kind, contentType: empty, payload: body)
                        }
                        sequence += 1
                        index += 1
                        count += 1
                    }
                    outbound.endBatch(mark, count: count)
                }
            }
        }
        try link.send(outbound.readable)
        outbound.consume(outbound.count)
        link.drain(scratch)
    }
}

/// Reads DELIVER frames from a relay (after subscribing), or PUBLISH frames for `direct`.
final class WireCollector: PeerCollector, @unchecked Sendable {
    let link: Link
    let inbound = InboundBuffer(limits: .permissive, initialCapacity: 1 << 20)
    let outbound = OutboundBuffer()

    init(allegro address: String, live: Bool) throws {
        link = try Link(address)
        outbound.append(.hello(role: .collector, clientID: "bench-collector", token: ""))
        outbound.append(.subscribe(start: .latest, credit: UInt32.max, name: "", live: live))
        try link.send(outbound.readable)
        outbound.consume(outbound.count)
        var subscribed = false
        while !subscribed {
            try poll(timeoutMillis: 5000) { _ in }
            subscribed = sawSubscribed
        }
    }

    init(accepted link: Link) { self.link = link }

    private var sawSubscribed = false

    func poll(timeoutMillis: Int32, _ onRecord: (UInt64) -> Void) throws {
        let space = inbound.writableSpace(minimum: 256 * 1024)
        let n = try link.receive(into: space, timeoutMillis: timeoutMillis)
        inbound.didWrite(n)
        while let frame = try inbound.next() {
            switch frame {
            case let .deliver(batch): for record in batch { onRecord(record.eventTimeNanos) }
            case let .publish(batch): for record in batch { onRecord(record.eventTimeNanos) }
            case .subscribed: sawSubscribed = true
            case let .ping(nonce):
                outbound.append(.pong(nonce: nonce))
                try link.send(outbound.readable)
                outbound.consume(outbound.count)
            default: break
            }
        }
    }
}

// MARK: Direct (the floor)

/// Producer straight to collector over one TCP connection, no relay, same frames.
final class DirectPeer: Peer {
    let name = "direct"
    private var listener: Socket?
    private var address = ""

    func start(scratch: URL) throws {
        let socket = try Socket.listen(on: SocketAddress(parsing: "127.0.0.1:0"))
        listener = socket
        address = try socket.localAddress().description
    }

    func stop() { listener?.close() }
    var serverCPUSeconds: Double? { nil }

    func producer() throws -> PeerProducer { try AllegroProducer(address, id: "direct", handshake: false) }

    func collector() throws -> PeerCollector {
        // The producer connects after the collector exists: accept lazily on the first poll.
        DirectCollector(listener: listener)
    }
}

final class DirectCollector: PeerCollector, @unchecked Sendable {
    let listener: Socket?
    var inner: WireCollector?

    init(listener: Socket?) { self.listener = listener }

    func poll(timeoutMillis: Int32, _ onRecord: (UInt64) -> Void) throws {
        if let inner { return try inner.poll(timeoutMillis: timeoutMillis, onRecord) }
        guard let listener, try listener.wait(timeoutMillis: timeoutMillis) else { return }
        if case let .accepted(socket, _) = listener.accept() { inner = WireCollector(accepted: Link(socket: socket)) }
    }
}

// MARK: The trivial C relay (the two-hop floor)

/// `c-relay`: Benchmarks/crelay/crelay.c, which forwards a producer's bytes unchanged to every
/// collector (no parsing, ring, disk or acks): the least two hops through the kernel cost on these
/// cores. Same frames as `direct`: PUBLISH in, PUBLISH out. One producer only (bytes from several
/// would interleave mid-frame).
final class CRelayPeer: Peer {
    let name = "c-relay"
    let binary: String
    private var server: Server?
    private var collectorAddress = ""
    private var producerAddress = ""

    init(binary: String) { self.binary = binary }

    func start(scratch: URL) throws {
        let collectorPort = try freePort(), producerPort = try freePort()
        collectorAddress = "127.0.0.1:\(collectorPort)"
        producerAddress = "127.0.0.1:\(producerPort)"
        server = try Server("c-relay", binary, [String(collectorPort), String(producerPort)],
                            log: scratch.appendingPathComponent("c-relay.log"))
        try waitForListener(collectorAddress)
        try waitForListener(producerAddress)
    }

    func stop() { server?.stop() }
    var serverCPUSeconds: Double? { server?.cpuSeconds }

    func producer() throws -> PeerProducer { try AllegroProducer(producerAddress, id: "c-relay", handshake: false) }
    func collector() throws -> PeerCollector { WireCollector(accepted: try Link(collectorAddress)) }
}
