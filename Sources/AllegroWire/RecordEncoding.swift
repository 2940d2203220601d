/// The header fields of a record to publish; the variable parts are passed as bytes.
public struct RecordHeader: Sendable, Equatable {
    public var producerSequence: UInt64
    public var eventTimeNanos: UInt64

    public init(producerSequence: UInt64, eventTimeNanos: UInt64) {
        self.producerSequence = producerSequence
        self.eventTimeNanos = eventTimeNanos
    }
}

/// A field was too long to encode. Thrown before anything is written.
public struct RecordTooLarge: Error, Equatable, Sendable, CustomStringConvertible {
    public var field: String
    public var length: Int
    public var limit: Int

    public init(field: String, length: Int, limit: Int) {
        self.field = field
        self.length = length
        self.limit = limit
    }

    public var description: String { "record field \(field) is \(length) bytes; the limit is \(limit)" }
}

extension OutboundBuffer {
    /// Appends one record in PUBLISH layout inside a batch begun with `beginBatch(.publish)`.
    public func appendPublishRecord(_ header: RecordHeader, session: UnsafeRawBufferPointer,
                                    kind: UnsafeRawBufferPointer, contentType: UnsafeRawBufferPointer,
                                    payload: UnsafeRawBufferPointer) throws(RecordTooLarge) {
        try Self.checkShort("session", session)
        try Self.checkShort("kind", kind)
        try Self.checkShort("content_type", contentType)
        guard payload.count <= Wire.absoluteMaxFrameLength else {
            throw RecordTooLarge(field: "payload", length: payload.count, limit: Wire.absoluteMaxFrameLength)
        }
        let size = PublishLayout.headerSize + session.count + kind.count + contentType.count + payload.count
        let out = reserve(size)
        out.storeBytes(of: header.producerSequence.littleEndian, toByteOffset: PublishLayout.producerSequence, as: UInt64.self)
        out.storeBytes(of: header.eventTimeNanos.littleEndian, toByteOffset: PublishLayout.eventTime, as: UInt64.self)
        out.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: PublishLayout.payloadLength, as: UInt32.self)
        out.storeBytes(of: UInt8(session.count), toByteOffset: PublishLayout.sessionLength, as: UInt8.self)
        out.storeBytes(of: UInt8(kind.count), toByteOffset: PublishLayout.kindLength, as: UInt8.self)
        out.storeBytes(of: UInt8(contentType.count), toByteOffset: PublishLayout.contentTypeLength, as: UInt8.self)
        out.storeBytes(of: UInt8(0), toByteOffset: PublishLayout.flags, as: UInt8.self)
        var at = PublishLayout.headerSize
        Self.copy(session, to: out + at); at += session.count
        Self.copy(kind, to: out + at); at += kind.count
        Self.copy(contentType, to: out + at); at += contentType.count
        Self.copy(payload, to: out + at)
        advance(size)
    }

    /// Appends one record in DELIVER layout inside a batch begun with `beginBatch(.deliver)`.
    /// Returns the bytes written.
    @discardableResult
    public func appendDeliverRecord(relaySequence: UInt64, ingestNanos: UInt64, producer: UnsafeRawBufferPointer,
                                    _ record: PublishedRecord) throws(RecordTooLarge) -> Int {
        try Self.checkShort("producer", producer)
        let size = DeliveredRecordLayout.encodedSize(producerLength: producer.count, record)
        DeliveredRecordLayout.encode(into: reserve(size), relaySequence: relaySequence, ingestNanos: ingestNanos,
                                     producer: producer, record)
        advance(size)
        return size
    }

    static func checkShort(_ field: String, _ bytes: UnsafeRawBufferPointer) throws(RecordTooLarge) {
        guard bytes.count <= 255 else { throw RecordTooLarge(field: field, length: bytes.count, limit: 255) }
    }

    static func copy(_ part: UnsafeRawBufferPointer, to destination: UnsafeMutableRawPointer) {
        if let source = part.baseAddress, part.count > 0 {
            destination.copyMemory(from: source, byteCount: part.count)
        }
    }
}

/// Writes a record in DELIVER layout into raw memory: the form the relay keeps in its ring,
/// so delivering a record is one copy of contiguous bytes.
public enum DeliveredRecordLayout {
    public static let headerSize = DeliverLayout.headerSize

    /// Bytes a record takes in DELIVER layout. The producer id is at most 255 bytes.
    public static func encodedSize(producerLength: Int, _ record: PublishedRecord) -> Int {
        DeliverLayout.headerSize + producerLength + record.session.count + record.kind.count
            + record.contentType.count + record.payload.count
    }

    /// Encodes into `out`, which has room for `encodedSize(...)` bytes.
    public static func encode(into out: UnsafeMutableRawPointer, relaySequence: UInt64, ingestNanos: UInt64,
                              producer: UnsafeRawBufferPointer, _ record: PublishedRecord) {
        out.storeBytes(of: relaySequence.littleEndian, toByteOffset: DeliverLayout.relaySequence, as: UInt64.self)
        out.storeBytes(of: ingestNanos.littleEndian, toByteOffset: DeliverLayout.ingestTime, as: UInt64.self)
        out.storeBytes(of: record.producerSequence.littleEndian, toByteOffset: DeliverLayout.producerSequence, as: UInt64.self)
        out.storeBytes(of: record.eventTimeNanos.littleEndian, toByteOffset: DeliverLayout.eventTime, as: UInt64.self)
        out.storeBytes(of: UInt32(record.payload.count).littleEndian, toByteOffset: DeliverLayout.payloadLength, as: UInt32.self)
        out.storeBytes(of: UInt8(truncatingIfNeeded: producer.count), toByteOffset: DeliverLayout.producerLength, as: UInt8.self)
        out.storeBytes(of: UInt8(truncatingIfNeeded: record.session.count), toByteOffset: DeliverLayout.sessionLength, as: UInt8.self)
        out.storeBytes(of: UInt8(truncatingIfNeeded: record.kind.count), toByteOffset: DeliverLayout.kindLength, as: UInt8.self)
        out.storeBytes(of: UInt8(truncatingIfNeeded: record.contentType.count), toByteOffset: DeliverLayout.contentTypeLength, as: UInt8.self)
        var at = DeliverLayout.headerSize
        OutboundBuffer.copy(producer, to: out + at); at += producer.count
        OutboundBuffer.copy(record.session.bytes, to: out + at); at += record.session.count
        OutboundBuffer.copy(record.kind.bytes, to: out + at); at += record.kind.count
        OutboundBuffer.copy(record.contentType.bytes, to: out + at); at += record.contentType.count
        OutboundBuffer.copy(record.payload.bytes, to: out + at)
    }

    /// The relay sequence of a record stored in DELIVER layout.
    public static func relaySequence(at record: UnsafeRawPointer) -> UInt64 {
        UInt64(littleEndian: record.loadUnaligned(fromByteOffset: DeliverLayout.relaySequence, as: UInt64.self))
    }

    /// The ingest time of a record stored in DELIVER layout.
    public static func ingestNanos(at record: UnsafeRawPointer) -> UInt64 {
        UInt64(littleEndian: record.loadUnaligned(fromByteOffset: DeliverLayout.ingestTime, as: UInt64.self))
    }

    /// The producer sequence of a record stored in DELIVER layout.
    public static func producerSequence(at record: UnsafeRawPointer) -> UInt64 {
        UInt64(littleEndian: record.loadUnaligned(fromByteOffset: DeliverLayout.producerSequence, as: UInt64.self))
    }

    /// The size of the DELIVER-layout record at the start of `bytes`, or nil when its header or
    /// its declared lengths run past `bytes` (damaged or truncated data).
    public static func size(of bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= DeliverLayout.headerSize, let base = bytes.baseAddress else { return nil }
        let size = DeliverLayout.headerSize
            + Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: DeliverLayout.payloadLength, as: UInt32.self)))
            + Int(bytes[DeliverLayout.producerLength]) + Int(bytes[DeliverLayout.sessionLength])
            + Int(bytes[DeliverLayout.kindLength]) + Int(bytes[DeliverLayout.contentTypeLength])
        return size <= bytes.count ? size : nil
    }

    /// The payload length of a record stored in DELIVER layout.
    public static func payloadLength(at record: UnsafeRawPointer) -> Int {
        Int(UInt32(littleEndian: record.loadUnaligned(fromByteOffset: DeliverLayout.payloadLength, as: UInt32.self)))
    }

    /// The session and kind of a DELIVER-layout record whose size `size(of:)` has checked.
    public static func sessionAndKind(of record: UnsafeRawBufferPointer) -> (session: UnsafeRawBufferPointer, kind: UnsafeRawBufferPointer) {
        let sessionStart = DeliverLayout.headerSize + Int(record[DeliverLayout.producerLength])
        let kindStart = sessionStart + Int(record[DeliverLayout.sessionLength])
        let kindEnd = kindStart + Int(record[DeliverLayout.kindLength])
        return (UnsafeRawBufferPointer(rebasing: record[sessionStart ..< kindStart]),
                UnsafeRawBufferPointer(rebasing: record[kindStart ..< kindEnd]))
    }

    /// The producer id of a DELIVER-layout record whose size `size(of:)` has checked.
    public static func producer(of record: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let length = Int(record[DeliverLayout.producerLength])
        return UnsafeRawBufferPointer(rebasing: record[DeliverLayout.headerSize ..< DeliverLayout.headerSize + length])
    }
}

/// The records of a buffer in DELIVER layout, back to back (a DELIVER body after its count, a
/// spill block, a replay chunk), each checked to lie whole inside the buffer. Iteration stops
/// at the end or at the first bytes that are not a whole record; `isWhole(_:)` tells which.
/// Allocates nothing.
public struct DeliveredRecords: Sequence {
    public let bytes: UnsafeRawBufferPointer

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public func makeIterator() -> Iterator { Iterator(bytes: bytes) }

    /// True when the buffer is exactly whole records (none cut short, nothing after them).
    public var isWhole: Bool {
        var iterator = makeIterator()
        while iterator.next() != nil {}
        return iterator.offset == bytes.count
    }

    public struct Iterator: IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        /// Where the next record starts.
        public private(set) var offset = 0

        /// The next record's bytes, or nil at the end or at bytes that are not a whole record.
        public mutating func next() -> UnsafeRawBufferPointer? {
            guard offset < bytes.count else { return nil }
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            guard let size = DeliveredRecordLayout.size(of: rest) else { return nil }
            offset += size
            return UnsafeRawBufferPointer(rebasing: rest[..<size])
        }
    }
}
