import AllegroPosix
import AllegroWire

/// One client connection to a relay: a non-blocking socket, its two buffers, and blocking
/// helpers with deadlines. Shared by `Producer` and `Collector`.
final class WireConnection {
    let socket: Socket
    let address: SocketAddress
    let inbound = InboundBuffer(limits: .handshake, initialCapacity: 64 * 1024)
    let outbound = OutboundBuffer(initialCapacity: 64 * 1024)
    private(set) var welcome: Welcome?
    /// When a byte last arrived from the relay (monotonic ns); the connection's start before.
    private(set) var lastHeardNanos = Clock.monotonicNanos
    private var peerClosed = false

    /// Connects and completes the handshake.
    init(to address: SocketAddress, role: Role, clientID: String, token: String, timeoutMillis: Int32) throws(ClientError) {
        self.address = address
        do { socket = try Socket.connect(to: address, timeoutMillis: timeoutMillis) } catch {
            throw .unreachable(address, error)
        }
        do throws(ClientError) {
            outbound.append(.hello(role: role, clientID: clientID, token: token))
            try flush(timeoutMillis: timeoutMillis)
            let deadline = Clock.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
            while welcome == nil {
                guard let frame = try nextFrame(deadline: deadline) else {
                    throw .timedOut("no WELCOME from \(address)")
                }
                switch frame {
                case let .welcome(answer):
                    welcome = answer
                    inbound.limits = DecodeLimits(maxFrameLength: Int(answer.maxFrameLength) + 4096,
                                                  maxBatchRecords: Int(answer.maxBatchRecords))
                case let .error(code, message):
                    throw .refused(code: code, message: message.string)
                default:
                    throw .protocolViolation("expected WELCOME, got \(frame.type.name)")
                }
            }
        } catch {
            close()
            throw error
        }
    }

    private var closed = false

    /// Closes the socket once; later calls do nothing (a second close could hit a descriptor
    /// number another thread has since been given).
    func close() {
        guard !closed else { return }
        closed = true
        socket.close()
    }

    deinit { close() }

    /// Writes everything queued, waiting for room until the deadline; reads nothing.
    func flush(timeoutMillis: Int32) throws(ClientError) {
        let deadline = Clock.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
        while !outbound.isEmpty {
            guard try writeSome() else {
                guard try wait(writable: true, deadline: deadline) else { throw .timedOut("sending to \(address)") }
                continue
            }
        }
    }

    /// One non-blocking write of queued bytes. False when the kernel had no room.
    @discardableResult
    func writeSome() throws(ClientError) -> Bool {
        guard !outbound.isEmpty else { return true }
        let result: IOResult
        do { result = try socket.send(outbound.readable) } catch { throw .disconnected(error.description) }
        switch result {
        case let .transferred(count):
            outbound.consume(count)
            return true
        case .wouldBlock:
            return false
        case .closed:
            throw .disconnected("the relay closed the connection")
        }
    }

    /// The next whole frame, reading as needed until `deadline` (monotonic ns); nil on timeout.
    /// The frame views `inbound` until the next call.
    func nextFrame(deadline: UInt64) throws(ClientError) -> Frame? {
        while true {
            if let frame = try decoded() { return frame }
            if peerClosed { throw .disconnected("the relay closed the connection") }
            guard try wait(writable: false, deadline: deadline) else { return nil }
            try readSome()
        }
    }

    /// Handles the frames every role treats alike: answers PING (queued; the caller writes),
    /// ignores PONG, and turns ERROR and GOODBYE into errors. Anything else is the role's to
    /// handle: it throws `protocolViolation` naming `role`.
    func handleCommon(_ frame: Frame, role: String) throws(ClientError) {
        switch frame {
        case let .ping(nonce): outbound.append(.pong(nonce: nonce))
        case .pong: break
        case let .error(code, message): throw .refused(code: code, message: message.string)
        case .goodbye: throw .disconnected("the relay said GOODBYE")
        default: throw .protocolViolation("a \(role) does not expect \(frame.type.name)")
        }
    }

    /// Throws once the relay has closed its side and every frame it sent has been read.
    func checkOpen() throws(ClientError) {
        if peerClosed { throw .disconnected("the relay closed the connection") }
    }

    /// A frame already buffered, without reading.
    func decoded() throws(ClientError) -> Frame? {
        do { return try inbound.next() } catch { throw .protocolViolation("undecodable frame from the relay: \(error)") }
    }

    /// One non-blocking read into `inbound`.
    func readSome() throws(ClientError) {
        let space = inbound.writableSpace(minimum: 16 * 1024)
        let result: IOResult
        do { result = try socket.receive(into: space) } catch { throw .disconnected(error.description) }
        switch result {
        case let .transferred(count):
            inbound.didWrite(count)
            lastHeardNanos = Clock.monotonicNanos
        case .wouldBlock: break
        case .closed: peerClosed = true
        }
    }

    /// Waits for writability (`writable`) or readability until `deadline`; false on timeout.
    func wait(writable: Bool, deadline: UInt64) throws(ClientError) -> Bool {
        let now = Clock.monotonicNanos
        guard now < deadline else { return false }
        let millis = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
        do { return try socket.wait(writable: writable, timeoutMillis: millis) } catch {
            throw .disconnected(error.description)
        }
    }

    /// Waits until there is something to read, or room to write queued bytes, or `deadline`.
    func waitForTraffic(deadline: UInt64) throws(ClientError) -> Bool {
        let now = Clock.monotonicNanos
        guard now < deadline else { return false }
        let millis = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
        do { return try socket.waitReadable(orWritable: !outbound.isEmpty, timeoutMillis: millis) } catch {
            throw .disconnected(error.description)
        }
    }
}
