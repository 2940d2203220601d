import Foundation
import Glibc

// A second, independent harness client: producer and collector written from
// protocol/PROTOCOL.md alone, with their own sockets, encoder and decoder. Nothing here comes
// from the relay's modules (no AllegroWire, AllegroPosix or AllegroClient), so a codec mistake
// shared by the relay and its own client cannot hide in the numbers. "Section N" is PROTOCOL.md's.
// Every integer on the wire is little-endian (the conventions at the top of PROTOCOL.md); the
// only big-endian numbers are the address and port in sockaddr_in (network byte order).
//
// Where PROTOCOL.md leaves a point open, a comment starting "Ambiguity" says so, and says what
// the relay's code (Sources/AllegroWire, Sources/AllegroRelay) does; this client follows that.
// The helper types are so they can never shadow the project's names in other files.

// MARK: Peers

/// `allegro-ind` and `allegro-live-ind`: the same relay as `allegro` and `allegro-live` (the
/// wrapped `AllegroPeer` starts and stops it), measured through `IndependentProducer` and
/// `IndependentCollector` instead of the project's own wire code.
final class IndependentAllegroPeer: Peer {
    let relay: AllegroPeer

    init(wrapping relay: AllegroPeer) { self.relay = relay }

    var name: String { relay.name }
    func start(scratch: URL) throws { try relay.start(scratch: scratch) }
    func stop() { relay.stop() }
    var serverCPUSeconds: Double? { relay.serverCPUSeconds }

    func producer() throws -> PeerProducer {
        try IndependentProducer(port: try relayPort(), id: "bench-ind-\(UUID().uuidString.prefix(8))")
    }

    func collector() throws -> PeerCollector { try IndependentCollector(port: try relayPort(), live: relay.live) }

    /// The port of the relay's `127.0.0.1:PORT` listen address.
    private func relayPort() throws -> UInt16 {
        let address = relay.address
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw IndependentClientError.refused("no port in the relay address \"\(address)\" (was the relay started?)")
        }
        return port
    }
}

/// Why an independent client stopped. Each case ends its connection: in version 1 every ERROR
/// closes (section 8), and bytes this client cannot accept lose the framing (section 2).
enum IndependentClientError: Error, CustomStringConvertible {
    /// A system call failed with this errno.
    case system(call: String, errno: Int32)
    /// The relay sent ERROR (section 8): its code and message.
    case relay(code: UInt16, message: String)
    /// The relay sent something PROTOCOL.md does not allow at this point.
    case protocolViolation(String)
    /// The relay closed the connection (end of stream, or GOODBYE).
    case closed(String)
    /// An answer did not come in time.
    case timedOut(String)
    /// This client would not send what it was asked to (it would break a rule of PROTOCOL.md).
    case refused(String)

    var description: String {
        switch self {
        case let .system(call, code): "\(call): \(String(cString: strerror(code))) (errno \(code))"
        case let .relay(code, message): "relay ERROR \(IndependentWire.errorName(code)) (\(code)): \(message)"
        case let .protocolViolation(what): "protocol violation by the relay: \(what)"
        case let .closed(what): "connection closed: \(what)"
        case let .timedOut(what): "timed out: \(what)"
        case let .refused(what): "refused: \(what)"
        }
    }
}

// MARK: Producer

/// Publishes to the relay (section 4): each `send` encodes its records into PUBLISH frames of
/// at most `maxBatchFrameBytes`, writes them, then reads whatever the relay sent (ACKs noted,
/// PINGs answered, an ERROR thrown) without waiting, so its replies never back up.
final class IndependentProducer: PeerProducer, @unchecked Sendable {
    // @unchecked: used by one sender thread at a time (made, then handed to it), like AllegroProducer.

    /// The most bytes of one PUBLISH frame, length prefix included: the batch size of the
    /// independent harness that filed the issue. A record too big for it alone goes alone.
    static let maxBatchFrameBytes = 64 * 1024
    /// The most a relay ever sends a producer: WELCOME (at most 277 bytes, section 3), ACK, PING,
    /// PONG, GOODBYE and ERROR (at most 1029 bytes, section 8). Ambiguity: PROTOCOL.md gives
    /// no limit on frames a client receives (section 2 limits what the relay accepts).
    private static let maxReplyFrameBytes = 4096
    private static let replyChunkBytes = 16 * 1024
    private static let handshakeWaitMillis = 5000

    /// The producer id (the HELLO's client id, section 3).
    let id: String
    private let connection: IndependentConnection
    private let frame: IndependentFrameWriter
    private let idBytes: Int
    /// From WELCOME: the largest frame `length` and the most records in one PUBLISH.
    private let maxFrameBytes: Int
    private let maxBatchRecords: Int
    private var payloads = PayloadCycle()
    /// The next producer sequence. Starts at the wall clock in microseconds, above anything an
    /// earlier run used (section 4), like `AllegroProducer`.
    private(set) var nextSequence: UInt64
    /// The highest ACK so far (section 4: cumulative, never backwards).
    private(set) var ackedThrough: UInt64 = 0
    /// Set when the connection failed; every later send throws it.
    private var failure: (any Error)?

    init(port: UInt16, id: String) throws {
        let connection = try IndependentConnection(port: port, maxInboundFrameBytes: IndependentProducer.maxReplyFrameBytes,
                                                   receiveChunkBytes: IndependentProducer.replyChunkBytes)
        let welcome = try connection.hello(role: IndependentWire.roleProducer, clientID: id,
                                           waitMillis: IndependentProducer.handshakeWaitMillis)
        self.connection = connection
        self.id = id
        idBytes = id.utf8.count
        maxFrameBytes = welcome.maxFrameBytes
        maxBatchRecords = welcome.maxBatchRecords
        frame = IndependentFrameWriter(capacityBytes: IndependentProducer.maxBatchFrameBytes)
        nextSequence = independentClockNanos(CLOCK_REALTIME) / 1000
    }

    func send(_ eventTimes: UnsafeBufferPointer<UInt64>, payloadSize: Int) throws {
        if let failure { throw failure }
        try checkRecordFits(payloadSize: payloadSize)
        do {
            var index = 0
            while index < eventTimes.count {
                index = encodeBatch(eventTimes, from: index, payloadSize: payloadSize)
                try writeFrame()
            }
            try drainReplies()
        } catch {
            failure = error
            connection.socket.shutdown()
            throw error
        }
    }

    /// Section 4, record size: a record is accepted only if, as delivered, it fits alone in one
    /// DELIVER frame: 5 + 40 + producer id + session + kind + content type + payload <=
    /// max_frame. The relay would close the connection (RECORD_TOO_LARGE), so it is refused here.
    private func checkRecordFits(payloadSize: Int) throws {
        let delivered = IndependentWire.batchOverheadBytes + IndependentWire.deliverRecordHeaderBytes + idBytes + payloadSize
        guard payloadSize >= 0, payloadSize <= Int(UInt32.max), delivered <= maxFrameBytes else {
            throw IndependentClientError.refused("a \(payloadSize)-byte payload is \(delivered) bytes as delivered; max_frame is \(maxFrameBytes)")
        }
    }

    /// Encodes one PUBLISH frame from `eventTimes[first...]`: as many records as fit in
    /// `maxBatchFrameBytes` (and max_frame) and max_batch, at least one. Returns the index after
    /// the last record taken.
    private func encodeBatch(_ eventTimes: UnsafeBufferPointer<UInt64>, from first: Int, payloadSize: Int) -> Int {
        let recordBytes = IndependentWire.publishRecordHeaderBytes + payloadSize
        let frameLimitBytes = min(Self.maxBatchFrameBytes, IndependentWire.lengthPrefixBytes + maxFrameBytes)
        frame.clear()
        let start = frame.beginFrame(IndependentWire.Code.publish)
        let countOffset = frame.count
        frame.put(UInt32(0))  // count, patched below
        var index = first
        while index < eventTimes.count, index - first < maxBatchRecords,
              index == first || frame.count + recordBytes <= frameLimitBytes {
            appendRecord(eventTime: eventTimes[index], payloadSize: payloadSize)
            index += 1
        }
        frame.patch(UInt32(index - first), at: countOffset)
        frame.endFrame(start)
        return index
    }

    /// One record in section 4's layout: the 24-byte header (no session, kind or content type),
    /// then the next payload of the harness's shared pool.
    private func appendRecord(eventTime: UInt64, payloadSize: Int) {
        let frame = self.frame
        frame.put(nextSequence)         // producer_seq
        frame.put(eventTime)            // event_time_ns
        frame.put(UInt32(payloadSize))  // payload_length
        frame.put(UInt8(0))             // session_length
        frame.put(UInt8(0))             // kind_length
        frame.put(UInt8(0))             // content_type_length
        frame.put(UInt8(0))             // flags: reserved
        payloads.next(size: payloadSize) { frame.put($0) }
        nextSequence += 1
    }

    /// Writes the encoded frame. When the relay has closed the connection, the ERROR it sent
    /// first (if any is still readable) is what is thrown.
    private func writeFrame() throws {
        do {
            try connection.socket.writeAll(frame.bytes)
        } catch {
            try drainReplies()
            throw error
        }
    }

    /// Reads what the relay has sent, without waiting.
    private func drainReplies() throws {
        let reader = connection.reader
        while true {
            let received = try connection.socket.receive(into: reader.space(), waitMillis: 0)
            guard received > 0 else { return }
            reader.didReceive(received)
            while let reply = try reader.next() {
                if try connection.handleCommon(reply) { continue }
                guard reply.type == IndependentWire.Code.ack else {
                    throw IndependentClientError.protocolViolation("a relay sends a producer no \(IndependentWire.frameName(reply.type))")
                }
                try noteAck(reply.body)
            }
        }
    }

    /// ACK `through: u64` (section 4): cumulative and never backwards on a connection. (It may
    /// name a sequence above this connection's: it covers only records "sent on this connection".)
    private func noteAck(_ body: UnsafeRawBufferPointer) throws {
        var fields = IndependentFields(body, frame: "ACK")
        let through: UInt64 = try fields.integer("through")
        try fields.finish()
        guard through >= ackedThrough else {
            throw IndependentClientError.protocolViolation("ACK through \(through) after ACK through \(ackedThrough)")
        }
        ackedThrough = through
    }
}

// MARK: Collector

/// Subscribes from `latest` (live or not, section 5) and reads DELIVER frames as they come,
/// across reads, in one reused buffer: each record's event time goes to `onRecord`; nothing is
/// copied or allocated per record. Answers PINGs, grants more credit as it consumes.
final class IndependentCollector: PeerCollector, @unchecked Sendable {
    // @unchecked: used by one collector thread at a time (made, then handed to it), like WireCollector.

    private static let receiveChunkBytes = 256 * 1024
    private static let handshakeWaitMillis = 5000
    /// Section 5: credit is a u32, so this is the largest grant one frame can carry.
    private static let initialCredit = UInt32.max
    /// Records consumed before more credit is granted: half the initial window (section 5).
    private static let creditTopUpRecords = UInt64(UInt32.max / 2)

    private let connection: IndependentConnection
    /// From WELCOME: the most records one DELIVER may hold.
    private let maxBatchRecords: Int
    /// Credit granted and not yet used: the relay may never deliver more (section 5).
    private var creditLeft: UInt64
    private var consumedSinceGrant: UInt64 = 0
    /// The last relay sequence delivered or skipped; the next must be above it (section 5).
    private var lastRelaySequence: UInt64
    /// Set when the connection failed; every later poll throws it.
    private var failure: (any Error)?

    init(port: UInt16, live: Bool, clientID: String = "bench-collector-ind") throws {
        let connection = try IndependentConnection(port: port, maxInboundFrameBytes: IndependentWire.handshakeMaxFrameBytes,
                                                   receiveChunkBytes: IndependentCollector.receiveChunkBytes)
        let welcome = try connection.hello(role: IndependentWire.roleCollector, clientID: clientID,
                                           waitMillis: IndependentCollector.handshakeWaitMillis)
        // Ambiguity: max_frame is "the largest frame length the relay accepts" (section 3) and
        // bounds DELIVER (section 5); nothing bounds the relay's other frames, and a WELCOME may
        // announce as little as 64 while an ERROR can be 1029 bytes. The relay never sends more
        // than max_frame (its DeliverFrames closes a frame before it would) and its own
        // max_frame_bytes is at least 4096, so accept up to the larger of the two.
        connection.reader.useFrameLimit(max(welcome.maxFrameBytes, IndependentWire.handshakeMaxFrameBytes))
        // Section 5: "After WELCOME a collector sends SUBSCRIBE" (so it is not pipelined behind HELLO).
        try connection.sendSubscribeLatest(live: live, credit: IndependentCollector.initialCredit)
        let answer = try connection.nextFrame(waitMillis: IndependentCollector.handshakeWaitMillis, awaiting: "SUBSCRIBED")
        guard answer.type == IndependentWire.Code.subscribed else {
            throw IndependentClientError.protocolViolation("\(IndependentWire.frameName(answer.type)) where SUBSCRIBED was due")
        }
        let first = try IndependentCollector.firstSequence(subscribed: answer.body)
        self.connection = connection
        maxBatchRecords = welcome.maxBatchRecords
        creditLeft = UInt64(IndependentCollector.initialCredit)
        lastRelaySequence = first - 1
    }

    func poll(timeoutMillis: Int32, _ onRecord: (UInt64) -> Void) throws {
        if let failure {
            // Closed: wait out the timeout (a caller that retries does not spin), then say why again.
            _ = Glibc.poll(nil, 0, timeoutMillis)
            throw failure
        }
        do {
            // Frames a previous read left whole (after SUBSCRIBED, say) come first, without waiting.
            let earlier = try handleBufferedFrames(onRecord)
            let reader = connection.reader
            reader.didReceive(try connection.socket.receive(into: reader.space(), waitMillis: earlier > 0 ? 0 : timeoutMillis))
            _ = try handleBufferedFrames(onRecord)
        } catch {
            failure = error
            connection.socket.shutdown()
            throw error
        }
    }

    /// SUBSCRIBED (section 5): first_sequence, head_sequence, committed; returns the first.
    private static func firstSequence(subscribed body: UnsafeRawBufferPointer) throws -> UInt64 {
        var fields = IndependentFields(body, frame: "SUBSCRIBED")
        let first: UInt64 = try fields.integer("first_sequence")
        let _: UInt64 = try fields.integer("head_sequence")
        let _: UInt64 = try fields.integer("committed")
        try fields.finish()
        guard first >= 1 else { throw IndependentClientError.protocolViolation("SUBSCRIBED: first_sequence 0 (relay sequences start at 1)") }
        return first
    }

    /// Handles every whole frame in the buffer; returns how many records were delivered.
    private func handleBufferedFrames(_ onRecord: (UInt64) -> Void) throws -> Int {
        var records = 0
        while let frame = try connection.reader.next() {
            if try connection.handleCommon(frame) { continue }
            switch frame.type {
            case IndependentWire.Code.deliver: records += try deliver(frame.body, onRecord)
            case IndependentWire.Code.skip: try skip(frame.body)
            // For durable collectors (section 5); an ephemeral one has nothing to do with it.
            case IndependentWire.Code.committed: continue
            default:
                throw IndependentClientError.protocolViolation("a relay sends a subscribed collector no \(IndependentWire.frameName(frame.type))")
            }
        }
        return records
    }

    /// One DELIVER (section 5). The whole body is checked first (count within 1 ... max_batch
    /// and the credit, every record inside the frame, relay_seq increasing, no bytes after the
    /// last record); only then is each record's event_time_ns reported. Text fields are not
    /// checked for UTF-8: only event times are read, and the client's cost stays out of the lag.
    private func deliver(_ body: UnsafeRawBufferPointer, _ onRecord: (UInt64) -> Void) throws -> Int {
        typealias Record = IndependentWire.Delivered
        guard body.count >= 4 else { throw IndependentClientError.protocolViolation("DELIVER: the count runs past the frame") }
        let count = Int(independentLoad(body, 0, as: UInt32.self))
        guard count >= 1, count <= maxBatchRecords else {
            throw IndependentClientError.protocolViolation("DELIVER: count \(count) is outside 1 ... \(maxBatchRecords) (max_batch)")
        }
        guard UInt64(count) <= creditLeft else {
            throw IndependentClientError.protocolViolation("DELIVER: \(count) records with \(creditLeft) credit left")
        }
        var offset = 4
        var previous = lastRelaySequence
        for _ in 0 ..< count {
            guard body.count - offset >= Record.headerBytes else {
                throw IndependentClientError.protocolViolation("DELIVER: a record header runs past the frame")
            }
            let sequence = independentLoad(body, offset + Record.relaySequenceOffset, as: UInt64.self)
            guard sequence > previous else {
                throw IndependentClientError.protocolViolation("DELIVER: relay_seq \(sequence) after \(previous)")
            }
            guard body[offset + Record.producerLengthOffset] >= 1 else {
                throw IndependentClientError.protocolViolation("DELIVER: record \(sequence) has an empty producer id")
            }
            let size = Record.size(body, at: offset)
            guard body.count - offset >= size else {
                throw IndependentClientError.protocolViolation("DELIVER: record \(sequence) runs past the frame")
            }
            previous = sequence
            offset += size
        }
        guard offset == body.count else {
            throw IndependentClientError.protocolViolation("DELIVER: \(body.count - offset) bytes after the last record")
        }
        offset = 4
        for _ in 0 ..< count {
            onRecord(independentLoad(body, offset + Record.eventTimeOffset, as: UInt64.self))
            offset += Record.size(body, at: offset)
        }
        lastRelaySequence = previous
        try spend(credit: UInt64(count))
        return count
    }

    /// SKIP `first: u64, last: u64` (section 5): numbers that will never be delivered.
    private func skip(_ body: UnsafeRawBufferPointer) throws {
        var fields = IndependentFields(body, frame: "SKIP")
        let first: UInt64 = try fields.integer("first")
        let last: UInt64 = try fields.integer("last")
        try fields.finish()
        guard first >= 1, first <= last, first > lastRelaySequence else {
            throw IndependentClientError.protocolViolation("SKIP \(first) ... \(last) after relay sequence \(lastRelaySequence)")
        }
        lastRelaySequence = last
    }

    /// Counts consumed records against the credit and grants more after every
    /// `creditTopUpRecords` (section 5), so the window never runs dry however long a run is.
    /// The credit held stays under the relay's cap of 4 x (2^32 - 1).
    private func spend(credit records: UInt64) throws {
        creditLeft -= records
        consumedSinceGrant += records
        guard consumedSinceGrant >= Self.creditTopUpRecords else { return }
        let grant = UInt32(min(consumedSinceGrant, UInt64(UInt32.max)))
        try connection.sendCredit(grant)
        creditLeft += UInt64(grant)
        consumedSinceGrant -= UInt64(grant)
    }
}
