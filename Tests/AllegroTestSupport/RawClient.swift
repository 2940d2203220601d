import AllegroPosix
import AllegroWire
import Foundation

/// A hand-driven protocol client for tests: sends exactly the bytes it is told to and reports
/// every frame the relay sends back, so bad input can be aimed at the real relay.
public final class RawClient {
    public let socket: Socket
    private let inbound = InboundBuffer(limits: .permissive)
    public private(set) var closedByPeer = false

    /// What the relay sent: the frame type, and for ERROR its code and message.
    public struct Received: CustomStringConvertible {
        public var type: FrameType
        public var errorCode: UInt16?
        public var message: String
        public var json: String
        public var description: String { json }
    }

    public init(_ address: String) throws {
        socket = try Socket.connect(to: SocketAddress(parsing: address), timeoutMillis: 5000)
    }

    deinit { socket.close() }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let result = try bytes.withUnsafeBytes { try socket.send(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            switch result {
            case let .transferred(count): offset += count
            case .wouldBlock: _ = try socket.wait(writable: true, timeoutMillis: 1000)
            case .closed: throw SystemError("send", errno: EPIPE)
            }
        }
    }

    public func send(_ frames: ControlFrame...) throws {
        let buffer = OutboundBuffer()
        for frame in frames { buffer.append(frame) }
        try send(buffer.bytes)
    }

    /// HELLO, then the WELCOME (or whatever came instead).
    @discardableResult
    public func hello(_ role: Role, id: String = "raw", token: String = "") throws -> [Received] {
        try send(.hello(role: role, clientID: id, token: token))
        return try receive(until: { $0.type == .welcome || $0.type == .error }, timeout: 5)
    }

    /// Reads frames until `stop` returns true for one, the relay closes, or the timeout passes.
    public func receive(until stop: (Received) -> Bool = { _ in false }, timeout: TimeInterval) throws -> [Received] {
        var seen: [Received] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            while let frame = try inbound.next() {
                var received = Received(type: frame.type, errorCode: nil, message: "", json: FrameJSON.render(frame))
                if case let .error(code, message) = frame {
                    received.errorCode = code
                    received.message = message.string
                }
                seen.append(received)
                if stop(received) { return seen }
            }
            if closedByPeer { return seen }
            let millis = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
            guard try socket.wait(timeoutMillis: millis) else { break }
            let space = inbound.writableSpace(minimum: 64 * 1024)
            switch try socket.receive(into: space) {
            case let .transferred(count): inbound.didWrite(count)
            case .wouldBlock: continue
            case .closed: closedByPeer = true
            }
        }
        return seen
    }

    /// Reads until the relay closes (or the timeout), returning the ERROR codes it sent.
    public func errorsUntilClosed(timeout: TimeInterval = 10) throws -> [UInt16] {
        try receive(timeout: timeout).compactMap(\.errorCode)
    }

    /// A PUBLISH of `count` small records with producer sequences from `first`.
    public static func publish(first: UInt64, count: Int, payload: (UInt64) -> String = { "raw-\($0)" }) -> [UInt8] {
        let buffer = OutboundBuffer()
        let mark = buffer.beginBatch(.publish)
        for sequence in first ..< first + UInt64(count) {
            var text = payload(sequence)
            text.withUTF8 { bytes in
                _ = try? buffer.appendPublishRecord(RecordHeader(producerSequence: sequence, eventTimeNanos: 1),
                                                    session: UnsafeRawBufferPointer(start: nil, count: 0),
                                                    kind: UnsafeRawBufferPointer(start: nil, count: 0),
                                                    contentType: UnsafeRawBufferPointer(start: nil, count: 0),
                                                    payload: UnsafeRawBufferPointer(bytes))
            }
        }
        buffer.endBatch(mark, count: count)
        return buffer.bytes
    }
}
