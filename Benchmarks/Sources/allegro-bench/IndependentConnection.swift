import Foundation
import Glibc

// The independent client's connection and socket (IndependentClient.swift), Glibc only.

// MARK: Connection

/// What both roles share: the socket, the reader, a writer for small control frames, the
/// handshake (section 3) and the answers every client owes (PONG, section 6).
final class IndependentConnection {
    let socket: IndependentSocket
    let reader: IndependentFrameReader
    /// HELLO, SUBSCRIBE, CREDIT and PONG: one at a time, written at once.
    private let control = IndependentFrameWriter(capacityBytes: 512)

    init(port: UInt16, maxInboundFrameBytes: Int, receiveChunkBytes: Int) throws {
        socket = try IndependentSocket(port: port)
        reader = IndependentFrameReader(maxFrameBytes: maxInboundFrameBytes, receiveChunkBytes: receiveChunkBytes)
    }

    /// Sends HELLO (section 3) with an empty token (the harness's relay has none configured)
    /// and waits for WELCOME.
    func hello(role: UInt8, clientID: String, waitMillis: Int) throws -> IndependentWelcome {
        let id = Array(clientID.utf8)
        guard id.count >= 1, id.count <= IndependentWire.maxClientIDBytes else {
            throw IndependentClientError.refused("a client id of \(id.count) bytes (section 3: 1 to 255)")
        }
        control.clear()
        let start = control.beginFrame(IndependentWire.Code.hello)
        control.put(IndependentWire.magic)
        control.put(IndependentWire.version)  // min_version
        control.put(IndependentWire.version)  // max_version
        control.put(role)
        control.put(UInt8(0))                 // flags: reserved
        control.put(UInt8(id.count))          // client_id: str8
        control.put(id)
        control.put(UInt16(0))                // token_length: no token
        control.endFrame(start)
        try socket.writeAll(control.bytes)
        let answer = try nextFrame(waitMillis: waitMillis, awaiting: "WELCOME")
        guard answer.type == IndependentWire.Code.welcome else {
            throw IndependentClientError.protocolViolation("\(IndependentWire.frameName(answer.type)) where WELCOME was due")
        }
        return try IndependentWelcome(answer.body)
    }

    /// SUBSCRIBE (section 5) from `latest`, ephemeral (empty name), live or not.
    func sendSubscribeLatest(live: Bool, credit: UInt32) throws {
        control.clear()
        let start = control.beginFrame(IndependentWire.Code.subscribe)
        control.put(IndependentWire.startLatest)        // start
        control.put(live ? IndependentWire.liveFlag : 0)  // flags
        control.put(UInt16(0))                          // reserved
        control.put(UInt64(0))                          // sequence: 0 unless start is 3
        control.put(credit)                             // credit
        control.put(UInt8(0))                           // name: empty str8 (ephemeral)
        control.endFrame(start)
        try socket.writeAll(control.bytes)
    }

    /// CREDIT `credit: u32` (section 5).
    func sendCredit(_ credit: UInt32) throws {
        control.clear()
        let start = control.beginFrame(IndependentWire.Code.credit)
        control.put(credit)
        control.endFrame(start)
        try socket.writeAll(control.bytes)
    }

    /// PONG `nonce: u64` (section 6), the nonce of the PING it answers.
    private func sendPong(nonce: UInt64) throws {
        control.clear()
        let start = control.beginFrame(IndependentWire.Code.pong)
        control.put(nonce)
        control.endFrame(start)
        try socket.writeAll(control.bytes)
    }

    /// The next frame that `handleCommon` leaves to the caller, waiting up to `waitMillis` in all.
    func nextFrame(waitMillis: Int, awaiting what: String) throws -> IndependentFrame {
        let deadline = independentClockNanos(CLOCK_MONOTONIC) / 1_000_000 + UInt64(waitMillis)
        while true {
            while let frame = try reader.next() {
                if try handleCommon(frame) { continue }
                return frame
            }
            let now = independentClockNanos(CLOCK_MONOTONIC) / 1_000_000
            guard now < deadline else { throw IndependentClientError.timedOut("no \(what) within \(waitMillis) ms") }
            reader.didReceive(try socket.receive(into: reader.space(), waitMillis: Int32(clamping: deadline - now)))
        }
    }

    /// What any connection may get at any time: PING (answered), PONG (nothing to do), GOODBYE
    /// (the relay is closing: thrown) and ERROR (thrown, section 8). False for any other frame.
    func handleCommon(_ frame: IndependentFrame) throws -> Bool {
        switch frame.type {
        case IndependentWire.Code.ping:
            var fields = IndependentFields(frame.body, frame: "PING")
            let nonce: UInt64 = try fields.integer("nonce")
            try fields.finish()
            try sendPong(nonce: nonce)
            return true
        case IndependentWire.Code.pong:
            var fields = IndependentFields(frame.body, frame: "PONG")
            let _: UInt64 = try fields.integer("nonce")
            try fields.finish()
            return true
        case IndependentWire.Code.goodbye:
            try IndependentFields(frame.body, frame: "GOODBYE").finish()
            throw IndependentClientError.closed("the relay said GOODBYE")
        case IndependentWire.Code.error:
            throw try Self.relayError(frame.body)
        default:
            return false
        }
    }

    /// ERROR (section 8): `code: u16, message_length: u16` (at most 1024), the message.
    private static func relayError(_ body: UnsafeRawBufferPointer) throws -> IndependentClientError {
        var fields = IndependentFields(body, frame: "ERROR")
        let code: UInt16 = try fields.integer("code")
        let length: UInt16 = try fields.integer("message_length")
        guard Int(length) <= IndependentWire.maxErrorMessageBytes else {
            throw IndependentClientError.protocolViolation("ERROR: message_length \(length) is above \(IndependentWire.maxErrorMessageBytes)")
        }
        let message = try fields.bytes(Int(length), "message")
        try fields.finish()
        return .relay(code: code, message: String(decoding: message, as: UTF8.self))
    }
}

/// WELCOME (section 3), each field checked against the range given there.
struct IndependentWelcome {
    /// max_frame: the largest frame `length` the relay accepts from now on.
    let maxFrameBytes: Int
    /// max_batch: the most records in one PUBLISH or DELIVER.
    let maxBatchRecords: Int
    let heartbeatMillis: UInt32
    let idleTimeoutMillis: UInt32
    let relayID: String

    init(_ body: UnsafeRawBufferPointer) throws {
        var fields = IndependentFields(body, frame: "WELCOME")
        let version: UInt16 = try fields.integer("version")
        let flags: UInt16 = try fields.integer("flags")
        let maxFrame: UInt32 = try fields.integer("max_frame")
        let maxBatch: UInt32 = try fields.integer("max_batch")
        heartbeatMillis = try fields.integer("heartbeat_ms")
        idleTimeoutMillis = try fields.integer("idle_timeout_ms")
        relayID = try fields.text8("relay_id")
        try fields.finish()
        guard version == IndependentWire.version else {
            throw IndependentClientError.protocolViolation("WELCOME: version \(version), but the HELLO offered only \(IndependentWire.version)")
        }
        guard flags == 0 else { throw IndependentClientError.protocolViolation("WELCOME: reserved flags \(flags)") }
        guard Int(maxFrame) >= IndependentWire.welcomeMinFrameBytes, Int(maxFrame) <= IndependentWire.absoluteMaxFrameBytes else {
            throw IndependentClientError.protocolViolation("WELCOME: max_frame \(maxFrame) is outside 64 ... 16777216")
        }
        guard maxBatch >= 1 else { throw IndependentClientError.protocolViolation("WELCOME: max_batch 0") }
        maxFrameBytes = Int(maxFrame)
        maxBatchRecords = Int(maxBatch)
    }
}

// MARK: Socket

/// One TCP connection to 127.0.0.1 with TCP_NODELAY. Writes block until every byte is sent
/// (TCP flow control is the relay's backpressure, section 4); reads wait in poll() and never
/// block in recv.
final class IndependentSocket {
    let descriptor: Int32

    init(port: UInt16) throws { descriptor = try IndependentSocket.connect(port: port) }

    deinit { Glibc.close(descriptor) }

    private static func connect(port: UInt16) throws -> Int32 {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let code = errno
        guard fd >= 0 else { throw IndependentClientError.system(call: "socket", errno: code) }
        do {
            try setNoDelay(fd)
            try connect(fd, port: port)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    private static func setNoDelay(_ fd: Int32) throws {
        var on: Int32 = 1
        let result = Glibc.setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        let code = errno
        guard result == 0 else { throw IndependentClientError.system(call: "setsockopt(TCP_NODELAY)", errno: code) }
    }

    /// A blocking connect to 127.0.0.1:`port`; sockaddr_in holds the address and port in
    /// network byte order (big-endian), unlike the protocol's integers.
    private static func connect(_ fd: Int32, port: UInt16) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let code = errno
        guard result == 0 else { throw IndependentClientError.system(call: "connect 127.0.0.1:\(port)", errno: code) }
    }

    /// Sends every byte, blocking while the relay's receive window is full.
    func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let sent = Glibc.send(descriptor, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            let code = errno
            if sent > 0 {
                offset += sent
            } else if sent < 0 && code == EINTR {
                continue
            } else {
                throw IndependentClientError.system(call: "send", errno: sent == 0 ? EPIPE : code)
            }
        }
    }

    /// Receives what has arrived into `space`, after waiting up to `waitMillis` for something
    /// (0: no wait). Returns 0 when nothing came; throws once the relay has closed.
    func receive(into space: UnsafeMutableRawBufferPointer, waitMillis: Int32) throws -> Int {
        guard let base = space.baseAddress, space.count > 0 else { return 0 }
        if waitMillis != 0 {
            guard try waitReadable(millis: waitMillis) else { return 0 }
        }
        let received = Glibc.recv(descriptor, base, space.count, Int32(MSG_DONTWAIT))
        let code = errno
        if received > 0 { return received }
        if received == 0 { throw IndependentClientError.closed("the relay closed the connection") }
        if code == EAGAIN || code == EWOULDBLOCK || code == EINTR { return 0 }
        throw IndependentClientError.system(call: "recv", errno: code)
    }

    /// Ends the connection both ways (after an error, section 6: the connection is closed
    /// either way); the descriptor itself is closed with the object.
    func shutdown() { _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }

    /// poll() for input; true when there is some (or a hang-up or error, which recv reports).
    private func waitReadable(millis: Int32) throws -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let ready = Glibc.poll(&entry, 1, millis)
        let code = errno
        guard ready >= 0 else {
            if code == EINTR { return false }
            throw IndependentClientError.system(call: "poll", errno: code)
        }
        return ready > 0
    }
}
