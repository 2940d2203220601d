/// A record as a producer publishes it: header fields and views of its variable parts.
public struct PublishedRecord {
    public var producerSequence: UInt64
    public var eventTimeNanos: UInt64
    public var session: ByteView
    public var kind: ByteView
    public var contentType: ByteView
    public var payload: ByteView
}

/// A record as the relay delivers it: the published record plus the relay's sequence,
/// ingest time and the producer id from the producer's HELLO.
public struct DeliveredRecord {
    public var relaySequence: UInt64
    public var ingestNanos: UInt64
    public var producerSequence: UInt64
    public var eventTimeNanos: UInt64
    public var producer: ByteView
    public var session: ByteView
    public var kind: ByteView
    public var contentType: ByteView
    public var payload: ByteView
}

/// Byte layout of one record inside PUBLISH: a 24-byte fixed header, then the variable parts.
enum PublishLayout {
    static let producerSequence = 0, eventTime = 8, payloadLength = 16
    static let sessionLength = 20, kindLength = 21, contentTypeLength = 22, flags = 23
    static let headerSize = 24
}

/// Byte layout of one record inside DELIVER: a 40-byte fixed header, then the variable parts.
enum DeliverLayout {
    static let relaySequence = 0, ingestTime = 8, producerSequence = 16, eventTime = 24
    static let payloadLength = 32, producerLength = 36, sessionLength = 37, kindLength = 38
    static let contentTypeLength = 39
    static let headerSize = 40
}

/// The records of one PUBLISH frame. The decoder validated every length once, so iterating
/// reads fixed offsets without further checks and allocates nothing.
public struct PublishBatch: Sequence {
    public let count: Int
    let records: UnsafeRawBufferPointer

    public func makeIterator() -> Iterator { Iterator(bytes: records, offset: 0) }

    public struct Iterator: IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var offset: Int

        public mutating func next() -> PublishedRecord? {
            guard offset < bytes.count else { return nil }
            let base = offset
            let payloadLength = Int(bytes.le(UInt32.self, at: base + PublishLayout.payloadLength))
            let sessionLength = Int(bytes[base + PublishLayout.sessionLength])
            let kindLength = Int(bytes[base + PublishLayout.kindLength])
            let typeLength = Int(bytes[base + PublishLayout.contentTypeLength])
            var at = base + PublishLayout.headerSize
            let session = bytes.view(at, sessionLength); at += sessionLength
            let kind = bytes.view(at, kindLength); at += kindLength
            let contentType = bytes.view(at, typeLength); at += typeLength
            let payload = bytes.view(at, payloadLength); at += payloadLength
            offset = at
            return PublishedRecord(
                producerSequence: bytes.le(UInt64.self, at: base + PublishLayout.producerSequence),
                eventTimeNanos: bytes.le(UInt64.self, at: base + PublishLayout.eventTime),
                session: session, kind: kind, contentType: contentType, payload: payload)
        }
    }
}

/// The records of one DELIVER frame, validated once by the decoder like `PublishBatch`.
public struct DeliverBatch: Sequence {
    public let count: Int
    let records: UnsafeRawBufferPointer

    public func makeIterator() -> Iterator { Iterator(bytes: records, offset: 0) }

    public struct Iterator: IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var offset: Int

        public mutating func next() -> DeliveredRecord? {
            guard offset < bytes.count else { return nil }
            let base = offset
            let payloadLength = Int(bytes.le(UInt32.self, at: base + DeliverLayout.payloadLength))
            let producerLength = Int(bytes[base + DeliverLayout.producerLength])
            let sessionLength = Int(bytes[base + DeliverLayout.sessionLength])
            let kindLength = Int(bytes[base + DeliverLayout.kindLength])
            let typeLength = Int(bytes[base + DeliverLayout.contentTypeLength])
            var at = base + DeliverLayout.headerSize
            let producer = bytes.view(at, producerLength); at += producerLength
            let session = bytes.view(at, sessionLength); at += sessionLength
            let kind = bytes.view(at, kindLength); at += kindLength
            let contentType = bytes.view(at, typeLength); at += typeLength
            let payload = bytes.view(at, payloadLength); at += payloadLength
            offset = at
            return DeliveredRecord(
                relaySequence: bytes.le(UInt64.self, at: base + DeliverLayout.relaySequence),
                ingestNanos: bytes.le(UInt64.self, at: base + DeliverLayout.ingestTime),
                producerSequence: bytes.le(UInt64.self, at: base + DeliverLayout.producerSequence),
                eventTimeNanos: bytes.le(UInt64.self, at: base + DeliverLayout.eventTime),
                producer: producer, session: session, kind: kind, contentType: contentType,
                payload: payload)
        }
    }
}
