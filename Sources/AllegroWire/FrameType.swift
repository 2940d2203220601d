/// The frame types of protocol version 1, by their one-byte code on the wire (see protocol/PROTOCOL.md).
public enum FrameType: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case welcome = 0x02
    case publish = 0x10
    case ack = 0x11
    case subscribe = 0x20
    case subscribed = 0x21
    case deliver = 0x22
    case credit = 0x23
    case commit = 0x24
    case committed = 0x25
    case skip = 0x26
    case ping = 0x30
    case pong = 0x31
    case goodbye = 0x3E
    case error = 0x3F

    /// The name used in PROTOCOL.md, test vectors and `allegro protocol decode`.
    public var name: String {
        switch self {
        case .hello: "HELLO"
        case .welcome: "WELCOME"
        case .publish: "PUBLISH"
        case .ack: "ACK"
        case .subscribe: "SUBSCRIBE"
        case .subscribed: "SUBSCRIBED"
        case .deliver: "DELIVER"
        case .credit: "CREDIT"
        case .commit: "COMMIT"
        case .committed: "COMMITTED"
        case .skip: "SKIP"
        case .ping: "PING"
        case .pong: "PONG"
        case .goodbye: "GOODBYE"
        case .error: "ERROR"
        }
    }
}

/// The role a client declares in its HELLO. Producers may only publish; collectors may only subscribe.
public enum Role: UInt8, Sendable {
    case producer = 1
    case collector = 2

    public var name: String { self == .producer ? "producer" : "collector" }
}

/// Where a SUBSCRIBE asks the stream to start.
public enum StartPosition: Sendable, Equatable {
    /// The oldest record the relay still holds.
    case earliest
    /// Only records accepted after the subscription.
    case latest
    /// Just after the durable collector's committed cursor (needs a collector name).
    case committed
    /// At this relay sequence number.
    case sequence(UInt64)

    public var name: String {
        switch self {
        case .earliest: "earliest"
        case .latest: "latest"
        case .committed: "committed"
        case .sequence: "sequence"
        }
    }
}
