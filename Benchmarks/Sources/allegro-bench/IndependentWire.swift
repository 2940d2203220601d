import Foundation
import Glibc

// The independent client's encoding and decoding (IndependentClient.swift), from PROTOCOL.md alone.

// MARK: The protocol's numbers

/// What this client needs of PROTOCOL.md, written out from the text.
enum IndependentWire {
    /// Section 2: the u32 before every frame, counting the type byte and the body after it.
    static let lengthPrefixBytes = 4
    /// Section 2: the largest `length` a relay accepts before the handshake completes.
    /// Ambiguity: section 2 says "frames of at most 4096 bytes"; section 4 makes clear that
    /// limits on frames apply to `length` (type byte and body, not the prefix), and the relay's
    /// InboundBuffer compares `length` with it, so that is what it means here.
    static let handshakeMaxFrameBytes = 4096
    /// Section 2: no peer may ever declare more.
    static let absoluteMaxFrameBytes = 16 * 1024 * 1024
    /// Section 3: the least max_frame a WELCOME may announce.
    static let welcomeMinFrameBytes = 64
    /// Section 3: client_id is 1 to 255 bytes.
    static let maxClientIDBytes = 255
    /// Section 8: an ERROR message is at most this long.
    static let maxErrorMessageBytes = 1024
    /// Sections 4 and 5: the type byte and the u32 count before a batch's records.
    static let batchOverheadBytes = 5
    /// Section 4: a PUBLISH record's fixed header.
    static let publishRecordHeaderBytes = 24
    /// Section 5: a DELIVER record's fixed header.
    static let deliverRecordHeaderBytes = Delivered.headerBytes
    /// Section 3: this client speaks version 1 only (min_version = max_version = 1).
    static let version: UInt16 = 1
    /// Section 3: the bytes `ALGR`.
    static let magic: [UInt8] = [0x41, 0x4C, 0x47, 0x52]
    /// Section 3: HELLO roles.
    static let roleProducer: UInt8 = 1
    static let roleCollector: UInt8 = 2
    /// Section 5: SUBSCRIBE `start` 1 is `latest`; bit 0 of `flags` is `live`.
    static let startLatest: UInt8 = 1
    static let liveFlag: UInt8 = 0x01

    /// Section 2: frame type codes.
    enum Code {
        static let hello: UInt8 = 0x01
        static let welcome: UInt8 = 0x02
        static let publish: UInt8 = 0x10
        static let ack: UInt8 = 0x11
        static let subscribe: UInt8 = 0x20
        static let subscribed: UInt8 = 0x21
        static let deliver: UInt8 = 0x22
        static let credit: UInt8 = 0x23
        static let commit: UInt8 = 0x24
        static let committed: UInt8 = 0x25
        static let skip: UInt8 = 0x26
        static let ping: UInt8 = 0x30
        static let pong: UInt8 = 0x31
        static let goodbye: UInt8 = 0x3E
        static let error: UInt8 = 0x3F
    }

    /// Section 5: a delivered record's fixed header, by byte offset.
    enum Delivered {
        static let relaySequenceOffset = 0
        static let eventTimeOffset = 24
        static let payloadLengthOffset = 32
        /// producer_length, then session_length, kind_length and content_type_length: a u8 each.
        static let producerLengthOffset = 36
        static let headerBytes = 40

        /// The bytes of the record at `offset`: the header, then producer, session, kind,
        /// content type and payload. The caller has checked the header is inside `body`.
        static func size(_ body: UnsafeRawBufferPointer, at offset: Int) -> Int {
            var size = headerBytes + Int(independentLoad(body, offset + payloadLengthOffset, as: UInt32.self))
            for field in 0 ..< 4 { size += Int(body[offset + producerLengthOffset + field]) }
            return size
        }
    }

    /// The frame's name in section 2's table, or its code when it is not a version 1 type.
    static func frameName(_ type: UInt8) -> String {
        switch type {
        case Code.hello: "HELLO"
        case Code.welcome: "WELCOME"
        case Code.publish: "PUBLISH"
        case Code.ack: "ACK"
        case Code.subscribe: "SUBSCRIBE"
        case Code.subscribed: "SUBSCRIBED"
        case Code.deliver: "DELIVER"
        case Code.credit: "CREDIT"
        case Code.commit: "COMMIT"
        case Code.committed: "COMMITTED"
        case Code.skip: "SKIP"
        case Code.ping: "PING"
        case Code.pong: "PONG"
        case Code.goodbye: "GOODBYE"
        case Code.error: "ERROR"
        default: "frame type 0x" + String(type, radix: 16, uppercase: true)
        }
    }

    /// Whether section 2's table defines the type.
    static func isDefined(_ type: UInt8) -> Bool {
        switch type {
        case Code.hello, Code.welcome, Code.publish, Code.ack, Code.subscribe, Code.subscribed, Code.deliver, Code.credit,
             Code.commit, Code.committed, Code.skip, Code.ping, Code.pong, Code.goodbye, Code.error: true
        default: false
        }
    }

    /// The code's name in section 8's table.
    static func errorName(_ code: UInt16) -> String {
        switch code {
        case 1: "MALFORMED_FRAME"
        case 2: "FRAME_TOO_LARGE"
        case 3: "UNKNOWN_FRAME_TYPE"
        case 4: "UNSUPPORTED_VERSION"
        case 5: "AUTH_FAILED"
        case 6: "NOT_PERMITTED"
        case 7: "UNEXPECTED_FRAME"
        case 8: "HANDSHAKE_TIMEOUT"
        case 9: "IDLE_TIMEOUT"
        case 10: "TOO_MANY_CONNECTIONS"
        case 11: "CURSOR_UNAVAILABLE"
        case 12: "BATCH_TOO_LARGE"
        case 13: "COMMIT_OUT_OF_RANGE"
        case 14: "UNKNOWN_COLLECTOR"
        case 15: "COLLECTOR_BUSY"
        case 16: "SHUTTING_DOWN"
        case 17: "INTERNAL_ERROR"
        case 18: "PRODUCER_REPLACED"
        // Ambiguity: section 4 names RECORD_TOO_LARGE, but section 8's table stops at 18 and
        // gives it no code; 19 is what the relay (AllegroWire's ErrorCode) and the vectors'
        // generate.py use.
        case 19: "RECORD_TOO_LARGE"
        // Section 8: a decoder must accept codes it does not know.
        default: "unknown code"
        }
    }
}

/// Reads the little-endian unsigned integer at `offset`, byte by byte (independent of the host's
/// byte order). The caller has checked that it lies inside `bytes`.
func independentLoad<T: FixedWidthInteger & UnsignedInteger>(_ bytes: UnsafeRawBufferPointer, _ offset: Int,
                                                                         as _: T.Type) -> T {
    var value: T = 0
    for index in 0 ..< MemoryLayout<T>.size { value |= T(bytes[offset + index]) << (index * 8) }
    return value
}

/// `clock_gettime` in nanoseconds (CLOCK_REALTIME: since the Unix epoch).
func independentClockNanos(_ clock: clockid_t) -> UInt64 {
    var now = timespec()
    clock_gettime(clock, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

// MARK: Frames

/// One received frame: its type byte and a view of its body, valid until the reader's next `space()`.
struct IndependentFrame {
    let type: UInt8
    let body: UnsafeRawBufferPointer
}

/// Reads a frame's fields in order, each checked against the frame's end (section 2: a field
/// running past the end, or bytes left after the last one, is MALFORMED_FRAME).
struct IndependentFields {
    let body: UnsafeRawBufferPointer
    let frame: String
    private var offset = 0

    init(_ body: UnsafeRawBufferPointer, frame: String) {
        self.body = body
        self.frame = frame
    }

    mutating func integer<T: FixedWidthInteger & UnsignedInteger>(_ field: String) throws -> T {
        let size = MemoryLayout<T>.size
        guard body.count - offset >= size else { throw overrun(field) }
        let value = independentLoad(body, offset, as: T.self)
        offset += size
        return value
    }

    mutating func bytes(_ count: Int, _ field: String) throws -> UnsafeRawBufferPointer {
        guard body.count - offset >= count else { throw overrun(field) }
        let view = UnsafeRawBufferPointer(rebasing: body[offset ..< offset + count])
        offset += count
        return view
    }

    /// A `str8`: a u8 byte length, then that much text, decoded leniently (bad UTF-8 is
    /// replaced, not rejected): this client only keeps it to show.
    mutating func text8(_ field: String) throws -> String {
        let length: UInt8 = try integer(field + "_length")
        return String(decoding: try bytes(Int(length), field), as: UTF8.self)
    }

    func finish() throws {
        guard offset == body.count else {
            throw IndependentClientError.protocolViolation("\(frame): \(body.count - offset) bytes after the last field")
        }
    }

    private func overrun(_ field: String) -> IndependentClientError {
        .protocolViolation("\(frame): \(field) runs past the end of the frame")
    }
}

/// The receive side of a connection: bytes in any chunking come out as whole frames (section
/// 2), from one buffer allocated up front (grown once, when WELCOME raises the frame limit).
final class IndependentFrameReader {
    private var storage: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    /// The largest `length` accepted, checked as soon as the prefix is here (section 2).
    private(set) var maxFrameBytes: Int
    /// The least room offered to each recv.
    private let receiveChunkBytes: Int

    init(maxFrameBytes: Int, receiveChunkBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
        self.receiveChunkBytes = receiveChunkBytes
        storage = .allocate(byteCount: IndependentFrameReader.capacity(maxFrameBytes, receiveChunkBytes), alignment: 8)
    }

    deinit { storage.deallocate() }

    /// A partial frame at the limit beside a whole chunk: a recv always has room.
    private static func capacity(_ maxFrameBytes: Int, _ receiveChunkBytes: Int) -> Int {
        IndependentWire.lengthPrefixBytes + maxFrameBytes + receiveChunkBytes
    }

    /// Takes a new frame limit (after WELCOME), growing the buffer if it needs more room.
    func useFrameLimit(_ maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
        let needed = Self.capacity(maxFrameBytes, receiveChunkBytes)
        guard needed > storage.count else { return }
        let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: needed, alignment: 8)
        let buffered = end - start
        if buffered > 0, let source = storage.baseAddress, let target = larger.baseAddress {
            target.copyMemory(from: source + start, byteCount: buffered)
        }
        storage.deallocate()
        storage = larger
        start = 0
        end = buffered
    }

    /// Where the next recv writes: at least `receiveChunkBytes`, once a partial frame left at the
    /// end has moved to the front. Ends the views of frames returned before.
    func space() -> UnsafeMutableRawBufferPointer {
        if start == end {
            start = 0
            end = 0
        } else if storage.count - end < receiveChunkBytes, start > 0, let base = storage.baseAddress {
            _ = memmove(base, base + start, end - start)
            end -= start
            start = 0
        }
        return UnsafeMutableRawBufferPointer(rebasing: storage[end...])
    }

    func didReceive(_ count: Int) { end = min(end + count, storage.count) }

    /// The next whole frame, or nil until more bytes come. Throws as soon as the bytes here
    /// cannot begin a valid frame (section 2): a zero length, a length over the limit (before
    /// any of the body is read), an undefined type byte.
    ///
    /// Section 6: a client that gets a frame type it does not know "should close the
    /// connection; it may not skip it and go on", so an undefined type is thrown, not skipped.
    /// Defined frames that need nothing from a role are skipped by their length by the callers.
    func next() throws -> IndependentFrame? {
        let prefix = IndependentWire.lengthPrefixBytes
        let available = end - start
        guard available >= prefix else { return nil }
        let bytes = UnsafeRawBufferPointer(storage)
        let length = Int(independentLoad(bytes, start, as: UInt32.self))
        guard length >= 1 else { throw IndependentClientError.protocolViolation("a frame of length 0 (MALFORMED_FRAME)") }
        guard length <= maxFrameBytes else {
            throw IndependentClientError.protocolViolation("a frame of length \(length), above the limit \(maxFrameBytes) (FRAME_TOO_LARGE)")
        }
        guard available > prefix else { return nil }
        let type = bytes[start + prefix]
        guard IndependentWire.isDefined(type) else {
            throw IndependentClientError.protocolViolation("\(IndependentWire.frameName(type)) is not defined in version 1 (UNKNOWN_FRAME_TYPE)")
        }
        guard available >= prefix + length else { return nil }
        let body = UnsafeRawBufferPointer(rebasing: bytes[start + prefix + 1 ..< start + prefix + length])
        start += prefix + length
        return IndependentFrame(type: type, body: body)
    }
}

/// The send side: frames encoded little-endian into one owned buffer that grows only when a
/// frame does not fit (so steady sending allocates nothing).
final class IndependentFrameWriter {
    private var storage: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init(capacityBytes: Int) { storage = .allocate(byteCount: max(capacityBytes, 64), alignment: 8) }

    deinit { storage.deallocate() }

    /// What is encoded so far.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage.baseAddress, count: count) }

    func clear() { count = 0 }

    /// Makes room for `more` bytes after what is written (doubling), keeping it.
    private func reserve(_ more: Int) {
        guard storage.count - count < more else { return }
        var size = storage.count
        while size - count < more { size *= 2 }
        let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 8)
        if count > 0, let source = storage.baseAddress, let target = larger.baseAddress {
            target.copyMemory(from: source, byteCount: count)
        }
        storage.deallocate()
        storage = larger
    }

    /// Appends an unsigned integer, least significant byte first.
    func put<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        reserve(size)
        store(value, at: count)
        count += size
    }

    func put(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        storage.baseAddress?.advanced(by: count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    func put(_ bytes: [UInt8]) { bytes.withUnsafeBytes { put($0) } }

    /// Overwrites a u32 written before (a frame's length, a batch's count).
    func patch(_ value: UInt32, at offset: Int) { store(value, at: offset) }

    /// Starts a frame (section 2): a length to patch, then the type byte. Returns where it starts.
    func beginFrame(_ type: UInt8) -> Int {
        let start = count
        put(UInt32(0))
        put(type)
        return start
    }

    /// Ends the frame begun at `start`: its length counts everything after the prefix.
    func endFrame(_ start: Int) {
        patch(UInt32(truncatingIfNeeded: count - start - IndependentWire.lengthPrefixBytes), at: start)
    }

    private func store<T: FixedWidthInteger & UnsignedInteger>(_ value: T, at offset: Int) {
        for index in 0 ..< MemoryLayout<T>.size {
            storage[offset + index] = UInt8(truncatingIfNeeded: value >> (index * 8))
        }
    }
}
