import AllegroPosix
import Foundation

/// Payload for text-protocol peers: the event time (8 bytes, little-endian), then filler.
/// The event time (8 bytes, little-endian) then the rest of the next pool payload: the text
/// peers carry the time in the payload, where Allegro has a header field for it.
func timedPayload(_ eventTime: UInt64, size: Int, from payloads: inout PayloadCycle, into out: inout [UInt8]) {
    withUnsafeBytes(of: eventTime.littleEndian) { out.append(contentsOf: $0) }
    payloads.next(size: size) { body in if body.count > 8 { out.append(contentsOf: body[8...]) } }
}

func eventTime(in bytes: ArraySlice<UInt8>) -> UInt64 {
    var value: UInt64 = 0
    for (shift, byte) in bytes.prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
    return value
}

/// Splits a byte stream into CRLF lines and sized bodies.
struct LineBuffer {
    var bytes: [UInt8] = []
    var start = 0

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        if start > 0 && start == bytes.count { bytes.removeAll(keepingCapacity: true); start = 0 }
        if start > 1 << 20 { bytes.removeFirst(start); start = 0 }
        bytes.append(contentsOf: chunk)
    }

    /// The index of the CRLF ending a line that starts at `from`, if complete.
    func lineEnd(from: Int) -> Int? {
        var index = from
        while index + 1 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 { return index }
            index += 1
        }
        return nil
    }
}

// MARK: NATS (PUB/SUB)

final class NatsPeer: Peer {
    let name = "nats"
    private var server: Server?
    private var address = ""

    func start(scratch: URL) throws {
        let port = try freePort()
        address = "127.0.0.1:\(port)"
        server = try Server("nats", "/usr/sbin/nats-server", ["-a", "127.0.0.1", "-p", String(port)],
                            log: scratch.appendingPathComponent("nats.log"))
        try waitForListener(address)
    }

    func stop() { server?.stop() }
    var serverCPUSeconds: Double? { server?.cpuSeconds }

    func producer() throws -> PeerProducer { try NatsProducer(address) }
    func collector() throws -> PeerCollector { try NatsCollector(address) }
}

final class NatsProducer: PeerProducer, @unchecked Sendable {
    let link: Link
    var out: [UInt8] = []
    var payloads = PayloadCycle()
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)

    init(_ address: String) throws {
        link = try Link(address)
        try link.send(Array("CONNECT {\"verbose\":false,\"pedantic\":false}\r\n".utf8))
    }

    deinit { scratch.deallocate() }

    func send(_ eventTimes: UnsafeBufferPointer<UInt64>, payloadSize: Int) throws {
        out.removeAll(keepingCapacity: true)
        let header = Array("PUB bench \(payloadSize)\r\n".utf8)
        for time in eventTimes {
            out.append(contentsOf: header)
            timedPayload(time, size: payloadSize, from: &payloads, into: &out)
            out.append(13); out.append(10)
        }
        try link.send(out)
        // The server's PINGs to this connection are answered, other input dropped.
        let n = (try? link.socket.receive(into: scratch)) ?? .wouldBlock
        if case let .transferred(count) = n, count > 0,
           String(decoding: UnsafeRawBufferPointer(rebasing: scratch[..<count]), as: UTF8.self).contains("PING") {
            try link.send(Array("PONG\r\n".utf8))
        }
    }
}

final class NatsCollector: PeerCollector, @unchecked Sendable {
    let link: Link
    var lines = LineBuffer()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)

    init(_ address: String) throws {
        link = try Link(address)
        try link.send(Array("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB bench 1\r\nPING\r\n".utf8))
        // Subscribed once the server answers the PING.
        var ready = false
        let deadline = Date().addingTimeInterval(5)
        while !ready && Date() < deadline {
            let n = try link.receive(into: buffer, timeoutMillis: 1000)
            lines.append(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            ready = String(decoding: lines.bytes, as: UTF8.self).contains("PONG")
        }
        lines = LineBuffer()
    }

    deinit { buffer.deallocate() }

    func poll(timeoutMillis: Int32, _ onRecord: (UInt64) -> Void) throws {
        let n = try link.receive(into: buffer, timeoutMillis: timeoutMillis)
        guard n > 0 else { return }
        lines.append(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
        while let end = lines.lineEnd(from: lines.start) {
            let line = lines.bytes[lines.start ..< end]
            if line.starts(with: Array("MSG ".utf8)) {
                let size = Int(String(decoding: line.split(separator: 32).last ?? [], as: UTF8.self)) ?? 0
                let bodyStart = end + 2
                guard bodyStart + size + 2 <= lines.bytes.count else { return }
                onRecord(eventTime(in: lines.bytes[bodyStart ..< bodyStart + size]))
                lines.start = bodyStart + size + 2
            } else {
                if line.starts(with: Array("PING".utf8)) { try link.send(Array("PONG\r\n".utf8)) }
                lines.start = end + 2
            }
        }
    }
}

// MARK: Redis Streams (XADD, XREAD BLOCK)

final class RedisPeer: Peer {
    let name = "redis"
    private var server: Server?
    private var address = ""

    func start(scratch: URL) throws {
        let port = try freePort()
        address = "127.0.0.1:\(port)"
        server = try Server("redis", "/usr/bin/redis-server",
                            ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            log: scratch.appendingPathComponent("redis.log"))
        try waitForListener(address)
    }

    func stop() { server?.stop() }
    var serverCPUSeconds: Double? { server?.cpuSeconds }

    func producer() throws -> PeerProducer { try RedisProducer(address) }
    func collector() throws -> PeerCollector { try RedisCollector(address) }
}

func resp(_ parts: [[UInt8]], into out: inout [UInt8]) {
    out.append(contentsOf: Array("*\(parts.count)\r\n".utf8))
    for part in parts {
        out.append(contentsOf: Array("$\(part.count)\r\n".utf8))
        out.append(contentsOf: part)
        out.append(13); out.append(10)
    }
}

final class RedisProducer: PeerProducer, @unchecked Sendable {
    let link: Link
    var out: [UInt8] = []
    var payload: [UInt8] = []
    var payloads = PayloadCycle()
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    let command: [[UInt8]] = [Array("XADD".utf8), Array("bench".utf8), Array("*".utf8), Array("t".utf8)]

    init(_ address: String) throws { link = try Link(address) }
    deinit { scratch.deallocate() }

    func send(_ eventTimes: UnsafeBufferPointer<UInt64>, payloadSize: Int) throws {
        out.removeAll(keepingCapacity: true)
        for time in eventTimes {
            payload.removeAll(keepingCapacity: true)
            timedPayload(time, size: payloadSize, from: &payloads, into: &payload)
            resp(command + [payload], into: &out)
        }
        try link.send(out)
        link.drain(scratch)
    }
}

/// Reads with XREAD BLOCK from the last ID seen. A minimal RESP parser: arrays, bulk strings,
/// simple strings, integers, nulls.
final class RedisCollector: PeerCollector, @unchecked Sendable {
    let link: Link
    var lines = LineBuffer()
    var lastID = "$"
    var waiting = false
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)

    indirect enum Value {
        case bulk(ArraySlice<UInt8>)
        case array([Value])
        case other
    }

    init(_ address: String) throws {
        link = try Link(address)
        try request()
    }

    deinit { buffer.deallocate() }

    private func request() throws {
        var out: [UInt8] = []
        resp(["XREAD", "BLOCK", "0", "COUNT", "4096", "STREAMS", "bench", lastID].map { Array($0.utf8) }, into: &out)
        try link.send(out)
        waiting = true
    }

    func poll(timeoutMillis: Int32, _ onRecord: (UInt64) -> Void) throws {
        let n = try link.receive(into: buffer, timeoutMillis: timeoutMillis)
        guard n > 0 else { return }
        lines.append(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
        while let (value, end) = parse(at: lines.start) {
            lines.start = end
            // [[stream, [[id, [field, value]], ...]]]
            if case let .array(streams) = value {
                for stream in streams {
                    guard case let .array(pair) = stream, pair.count == 2, case let .array(entries) = pair[1] else { continue }
                    for entry in entries {
                        guard case let .array(item) = entry, item.count == 2, case let .bulk(id) = item[0],
                              case let .array(fields) = item[1], fields.count == 2, case let .bulk(body) = fields[1] else { continue }
                        lastID = String(decoding: id, as: UTF8.self)
                        onRecord(eventTime(in: body))
                    }
                }
            }
            try request()
        }
    }

    private func parse(at position: Int) -> (Value, Int)? {
        guard position < lines.bytes.count, let end = lines.lineEnd(from: position) else { return nil }
        let kind = lines.bytes[position]
        let number = Int(String(decoding: lines.bytes[position + 1 ..< end], as: UTF8.self)) ?? -1
        switch kind {
        case UInt8(ascii: "$"):
            if number < 0 { return (.other, end + 2) }
            guard end + 2 + number + 2 <= lines.bytes.count else { return nil }
            return (.bulk(lines.bytes[end + 2 ..< end + 2 + number]), end + 2 + number + 2)
        case UInt8(ascii: "*"):
            if number < 0 { return (.other, end + 2) }
            var items: [Value] = []
            var at = end + 2
            for _ in 0 ..< number {
                guard let (item, next) = parse(at: at) else { return nil }
                items.append(item)
                at = next
            }
            return (.array(items), at)
        default:
            return (.other, end + 2)
        }
    }
}
