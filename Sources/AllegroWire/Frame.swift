/// One decoded frame. Variable-length fields are `ByteView`s into the buffer the frame was
/// decoded from: valid until that buffer is next written to; copy out what must outlive it.
public enum Frame {
    case hello(Hello)
    case welcome(Welcome)
    case publish(PublishBatch)
    case ack(through: UInt64)
    case subscribe(Subscribe)
    case subscribed(Subscribed)
    case deliver(DeliverBatch)
    case credit(UInt32)
    case commit(through: UInt64)
    case committed(through: UInt64)
    case skip(first: UInt64, last: UInt64)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    case goodbye
    case error(code: UInt16, message: ByteView)

    public var type: FrameType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .publish: .publish
        case .ack: .ack
        case .subscribe: .subscribe
        case .subscribed: .subscribed
        case .deliver: .deliver
        case .credit: .credit
        case .commit: .commit
        case .committed: .committed
        case .skip: .skip
        case .ping: .ping
        case .pong: .pong
        case .goodbye: .goodbye
        case .error: .error
        }
    }
}

/// A client's opening frame: the versions it speaks, its role, its id and its token.
public struct Hello {
    public var minVersion: UInt16
    public var maxVersion: UInt16
    public var role: Role
    /// For a producer, its producer id: the key under which the relay drops resent duplicates.
    public var clientID: ByteView
    public var token: ByteView

    /// The highest version both sides speak, or nil when the ranges do not meet.
    public func negotiate(supported: ClosedRange<UInt16> = Wire.version ... Wire.version) -> UInt16? {
        let low = max(minVersion, supported.lowerBound)
        let high = min(maxVersion, supported.upperBound)
        return low <= high ? high : nil
    }
}

/// The relay's answer to an accepted HELLO: the version in force and the limits it enforces.
public struct Welcome: Equatable, Sendable {
    public var version: UInt16
    public var maxFrameLength: UInt32
    public var maxBatchRecords: UInt32
    public var heartbeatMillis: UInt32
    public var idleTimeoutMillis: UInt32
    public var relayID: String

    public init(version: UInt16, maxFrameLength: UInt32, maxBatchRecords: UInt32,
                heartbeatMillis: UInt32, idleTimeoutMillis: UInt32, relayID: String) {
        self.version = version
        self.maxFrameLength = maxFrameLength
        self.maxBatchRecords = maxBatchRecords
        self.heartbeatMillis = heartbeatMillis
        self.idleTimeoutMillis = idleTimeoutMillis
        self.relayID = relayID
    }

    /// The decode limits this WELCOME announces.
    public var limits: DecodeLimits {
        DecodeLimits(maxFrameLength: Int(maxFrameLength), maxBatchRecords: Int(maxBatchRecords))
    }
}

/// A collector's request for the stream.
public struct Subscribe {
    public var start: StartPosition
    /// Initial flow-control credit, in records.
    public var credit: UInt32
    /// The durable collector name; empty for an ephemeral subscription.
    public var name: ByteView
    /// Records are delivered as soon as they are accepted, before they are fsync'd: lower lag,
    /// but after a relay crash such a record may be gone, or come again under a new number.
    /// Only an ephemeral subscription may ask for it.
    public var live: Bool

    /// The `flags` bit that asks for live delivery.
    public static let liveFlag: UInt8 = 0x01
}

/// The relay's answer to SUBSCRIBE.
public struct Subscribed: Equatable, Sendable {
    /// Relay sequence of the first record this subscription delivers.
    public var firstSequence: UInt64
    /// The next relay sequence to be assigned when the subscription started.
    public var headSequence: UInt64
    /// The durable collector's committed cursor (0 when none).
    public var committed: UInt64

    public init(firstSequence: UInt64, headSequence: UInt64, committed: UInt64) {
        self.firstSequence = firstSequence
        self.headSequence = headSequence
        self.committed = committed
    }
}
