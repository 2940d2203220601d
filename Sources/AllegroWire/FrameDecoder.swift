/// Decodes one frame body whose type and length the framing layer has already read.
/// Pure: no I/O, no allocation; views point into `body`.
public enum FrameDecoder {
    public static func decode(type: FrameType, body: UnsafeRawBufferPointer,
                              limits: DecodeLimits) throws(WireError) -> Frame {
        var reader = BodyReader(body, frame: type)
        let frame: Frame
        switch type {
        case .hello: frame = .hello(try hello(&reader))
        case .welcome: frame = .welcome(try welcome(&reader))
        case .publish: frame = .publish(try publish(&reader, limits: limits))
        case .ack: frame = .ack(through: try reader.integer(UInt64.self, "through"))
        case .subscribe: frame = .subscribe(try subscribe(&reader))
        case .subscribed:
            frame = .subscribed(Subscribed(
                firstSequence: try reader.integer(UInt64.self, "first_sequence"),
                headSequence: try reader.integer(UInt64.self, "head_sequence"),
                committed: try reader.integer(UInt64.self, "committed")))
        case .deliver: frame = .deliver(try deliver(&reader, limits: limits))
        case .credit: frame = .credit(try reader.integer(UInt32.self, "credit"))
        case .commit: frame = .commit(through: try reader.integer(UInt64.self, "through"))
        case .committed: frame = .committed(through: try reader.integer(UInt64.self, "through"))
        case .skip:
            let first = try reader.integer(UInt64.self, "first")
            let last = try reader.integer(UInt64.self, "last")
            guard first >= 1, first <= last else { throw reader.invalid("first", "need 1 <= first <= last") }
            frame = .skip(first: first, last: last)
        case .ping: frame = .ping(nonce: try reader.integer(UInt64.self, "nonce"))
        case .pong: frame = .pong(nonce: try reader.integer(UInt64.self, "nonce"))
        case .goodbye: frame = .goodbye
        case .error:
            let code = try reader.integer(UInt16.self, "code")
            let length = Int(try reader.integer(UInt16.self, "message_length"))
            guard length <= Wire.maxErrorMessageLength else {
                throw reader.invalid("message_length", "at most \(Wire.maxErrorMessageLength) bytes")
            }
            frame = .error(code: code, message: try reader.text(length, "message"))
        }
        try reader.finish()
        return frame
    }

    static func hello(_ reader: inout BodyReader) throws(WireError) -> Hello {
        let magic = try reader.raw(4, "magic")
        guard magic.bytes.elementsEqual(Wire.magic) else { throw reader.invalid("magic", "must be \"ALGR\"") }
        let minVersion = try reader.integer(UInt16.self, "min_version")
        let maxVersion = try reader.integer(UInt16.self, "max_version")
        guard minVersion >= 1, minVersion <= maxVersion else {
            throw reader.invalid("min_version", "need 1 <= min_version <= max_version")
        }
        let roleByte = try reader.integer(UInt8.self, "role")
        guard let role = Role(rawValue: roleByte) else { throw reader.invalid("role", "must be 1 or 2") }
        try reader.reserved(UInt8.self, "flags")
        let clientID = try reader.text8("client_id", allowEmpty: false)
        let tokenLength = Int(try reader.integer(UInt16.self, "token_length"))
        guard tokenLength <= Wire.maxTokenLength else {
            throw reader.invalid("token_length", "at most \(Wire.maxTokenLength) bytes")
        }
        let token = try reader.raw(tokenLength, "token")
        return Hello(minVersion: minVersion, maxVersion: maxVersion, role: role, clientID: clientID, token: token)
    }

    static func welcome(_ reader: inout BodyReader) throws(WireError) -> Welcome {
        let version = try reader.integer(UInt16.self, "version")
        try reader.reserved(UInt16.self, "flags")
        let maxFrame = try reader.integer(UInt32.self, "max_frame")
        let maxBatch = try reader.integer(UInt32.self, "max_batch")
        let heartbeat = try reader.integer(UInt32.self, "heartbeat_ms")
        let idle = try reader.integer(UInt32.self, "idle_timeout_ms")
        let relayID = try reader.text8("relay_id")
        guard maxFrame >= 64, maxFrame <= Wire.absoluteMaxFrameLength else {
            throw reader.invalid("max_frame", "must be 64 ... \(Wire.absoluteMaxFrameLength)")
        }
        guard maxBatch >= 1 else { throw reader.invalid("max_batch", "must be at least 1") }
        return Welcome(version: version, maxFrameLength: maxFrame, maxBatchRecords: maxBatch,
                       heartbeatMillis: heartbeat, idleTimeoutMillis: idle, relayID: relayID.string)
    }

    static func subscribe(_ reader: inout BodyReader) throws(WireError) -> Subscribe {
        let startByte = try reader.integer(UInt8.self, "start")
        let flags = try reader.integer(UInt8.self, "flags")
        guard flags & ~Subscribe.liveFlag == 0 else { throw reader.invalid("flags", "only bit 0 (live) is defined") }
        try reader.reserved(UInt16.self, "reserved")
        let sequence = try reader.integer(UInt64.self, "sequence")
        let credit = try reader.integer(UInt32.self, "credit")
        let name = try reader.text8("name")
        let start: StartPosition
        switch startByte {
        case 0: start = .earliest
        case 1: start = .latest
        case 2: start = .committed
        case 3: start = .sequence(sequence)
        default: throw reader.invalid("start", "must be 0 (earliest), 1 (latest), 2 (committed) or 3 (sequence)")
        }
        if startByte == 3 {
            guard sequence >= 1 else { throw reader.invalid("sequence", "relay sequences start at 1") }
        } else if sequence != 0 {
            throw reader.invalid("sequence", "must be 0 unless start is 3 (sequence)")
        }
        if start == .committed && name.isEmpty {
            throw reader.invalid("name", "start committed needs a durable collector name")
        }
        let live = flags & Subscribe.liveFlag != 0
        if live && !name.isEmpty {
            throw reader.invalid("flags", "live delivery is for ephemeral subscriptions: a durable collector is given only fsync'd records")
        }
        return Subscribe(start: start, credit: credit, name: name, live: live)
    }

    static func batchCount(_ reader: inout BodyReader, headerSize: Int, limits: DecodeLimits) throws(WireError) -> Int {
        let count = Int(try reader.integer(UInt32.self, "count"))
        guard count >= 1 else { throw reader.invalid("count", "a batch holds at least one record") }
        guard count <= limits.maxBatchRecords else { throw .batchTooLarge(count: count, limit: limits.maxBatchRecords) }
        guard count <= reader.remaining / headerSize else { throw .fieldOverrun(frame: reader.frame, field: "records") }
        return count
    }

    static func publish(_ reader: inout BodyReader, limits: DecodeLimits) throws(WireError) -> PublishBatch {
        let count = try batchCount(&reader, headerSize: PublishLayout.headerSize, limits: limits)
        let start = reader.offset
        var previous: UInt64 = 0
        for _ in 0 ..< count {
            let sequence = try reader.integer(UInt64.self, "producer_seq")
            guard sequence > previous else {
                throw reader.invalid("producer_seq", "must be at least 1 and increase within a batch")
            }
            previous = sequence
            _ = try reader.integer(UInt64.self, "event_time_ns")
            let payloadLength = Int(try reader.integer(UInt32.self, "payload_length"))
            let sessionLength = Int(try reader.integer(UInt8.self, "session_length"))
            let kindLength = Int(try reader.integer(UInt8.self, "kind_length"))
            let typeLength = Int(try reader.integer(UInt8.self, "content_type_length"))
            try reader.reserved(UInt8.self, "flags")
            _ = try reader.text(sessionLength, "session")
            _ = try reader.text(kindLength, "kind")
            _ = try reader.text(typeLength, "content_type")
            _ = try reader.raw(payloadLength, "payload")
        }
        let records = UnsafeRawBufferPointer(rebasing: reader.bytes[start ..< reader.offset])
        return PublishBatch(count: count, records: records)
    }

    static func deliver(_ reader: inout BodyReader, limits: DecodeLimits) throws(WireError) -> DeliverBatch {
        let count = try batchCount(&reader, headerSize: DeliverLayout.headerSize, limits: limits)
        let start = reader.offset
        var previous: UInt64 = 0
        for _ in 0 ..< count {
            let sequence = try reader.integer(UInt64.self, "relay_seq")
            guard sequence > previous else {
                throw reader.invalid("relay_seq", "must be at least 1 and increase within a batch")
            }
            previous = sequence
            _ = try reader.integer(UInt64.self, "ingest_ns")
            _ = try reader.integer(UInt64.self, "producer_seq")
            _ = try reader.integer(UInt64.self, "event_time_ns")
            let payloadLength = Int(try reader.integer(UInt32.self, "payload_length"))
            let producerLength = Int(try reader.integer(UInt8.self, "producer_length"))
            let sessionLength = Int(try reader.integer(UInt8.self, "session_length"))
            let kindLength = Int(try reader.integer(UInt8.self, "kind_length"))
            let typeLength = Int(try reader.integer(UInt8.self, "content_type_length"))
            _ = try reader.text(producerLength, "producer", allowEmpty: false)
            _ = try reader.text(sessionLength, "session")
            _ = try reader.text(kindLength, "kind")
            _ = try reader.text(typeLength, "content_type")
            _ = try reader.raw(payloadLength, "payload")
        }
        let records = UnsafeRawBufferPointer(rebasing: reader.bytes[start ..< reader.offset])
        return DeliverBatch(count: count, records: records)
    }
}
