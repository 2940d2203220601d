/// A frame other than a record batch, as a value to encode. Encoding these may allocate;
/// they are rare (handshake, acks, credits, heartbeats, errors).
public enum ControlFrame: Sendable, Equatable {
    case hello(minVersion: UInt16, maxVersion: UInt16, role: Role, clientID: String, token: [UInt8])
    case welcome(Welcome)
    case ack(through: UInt64)
    /// `live`: deliver records before they are fsync'd (ephemeral subscriptions only).
    case subscribe(start: StartPosition, credit: UInt32, name: String, live: Bool = false)
    case subscribed(Subscribed)
    case credit(UInt32)
    case commit(through: UInt64)
    case committed(through: UInt64)
    case skip(first: UInt64, last: UInt64)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    case goodbye
    case error(ErrorCode, String)

    /// A HELLO for protocol version 1.
    public static func hello(role: Role, clientID: String, token: String) -> ControlFrame {
        .hello(minVersion: Wire.version, maxVersion: Wire.version, role: role, clientID: clientID, token: Array(token.utf8))
    }
}

extension OutboundBuffer {
    /// Encodes a control frame. Text fields longer than the protocol allows are cut at a
    /// character boundary (ids to 255 bytes, ERROR messages to 1024, tokens to 1024).
    public func append(_ frame: ControlFrame) {
        switch frame {
        case let .hello(minVersion, maxVersion, role, clientID, token):
            let mark = beginFrame(.hello)
            put(Wire.magic)
            put(minVersion)
            put(maxVersion)
            put(role.rawValue)
            put(UInt8(0))
            putText8(Self.clip(clientID, to: 255))
            let tokenBytes = token.prefix(Wire.maxTokenLength)
            put(UInt16(tokenBytes.count))
            put(Array(tokenBytes))
            endFrame(mark)
        case let .welcome(welcome):
            let mark = beginFrame(.welcome)
            put(welcome.version)
            put(UInt16(0))
            put(welcome.maxFrameLength)
            put(welcome.maxBatchRecords)
            put(welcome.heartbeatMillis)
            put(welcome.idleTimeoutMillis)
            putText8(Self.clip(welcome.relayID, to: 255))
            endFrame(mark)
        case let .ack(through): fixed(.ack, through)
        case let .subscribe(start, credit, name, live):
            let mark = beginFrame(.subscribe)
            let flags: UInt8 = live ? Subscribe.liveFlag : 0
            switch start {
            case .earliest: put(UInt8(0)); put(flags); put(UInt16(0)); put(UInt64(0))
            case .latest: put(UInt8(1)); put(flags); put(UInt16(0)); put(UInt64(0))
            case .committed: put(UInt8(2)); put(flags); put(UInt16(0)); put(UInt64(0))
            case let .sequence(sequence): put(UInt8(3)); put(flags); put(UInt16(0)); put(sequence)
            }
            put(credit)
            putText8(Self.clip(name, to: 255))
            endFrame(mark)
        case let .subscribed(subscribed):
            let mark = beginFrame(.subscribed)
            put(subscribed.firstSequence)
            put(subscribed.headSequence)
            put(subscribed.committed)
            endFrame(mark)
        case let .credit(credit):
            let mark = beginFrame(.credit)
            put(credit)
            endFrame(mark)
        case let .commit(through): fixed(.commit, through)
        case let .committed(through): fixed(.committed, through)
        case let .skip(first, last):
            let mark = beginFrame(.skip)
            put(first)
            put(last)
            endFrame(mark)
        case let .ping(nonce): fixed(.ping, nonce)
        case let .pong(nonce): fixed(.pong, nonce)
        case .goodbye: endFrame(beginFrame(.goodbye))
        case let .error(code, message):
            let mark = beginFrame(.error)
            put(code.rawValue)
            var text = Self.clip(message, to: Wire.maxErrorMessageLength)
            text.withUTF8 { utf8 in
                put(UInt16(utf8.count))
                put(UnsafeRawBufferPointer(utf8))
            }
            endFrame(mark)
        }
    }

    private func fixed(_ type: FrameType, _ value: UInt64) {
        let mark = beginFrame(type)
        put(value)
        endFrame(mark)
    }

    /// The longest prefix of `text` whose UTF-8 fits in `limit` bytes.
    static func clip(_ text: String, to limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        var result = ""
        for character in text {
            if result.utf8.count + String(character).utf8.count > limit { break }
            result.append(character)
        }
        return result
    }
}
