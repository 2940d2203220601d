/// The codes an ERROR frame carries. In protocol version 1 every ERROR closes the connection.
public enum ErrorCode: UInt16, Sendable, CaseIterable {
    case malformedFrame = 1
    case frameTooLarge = 2
    case unknownFrameType = 3
    case unsupportedVersion = 4
    case authFailed = 5
    case notPermitted = 6
    case unexpectedFrame = 7
    case handshakeTimeout = 8
    case idleTimeout = 9
    case tooManyConnections = 10
    case cursorUnavailable = 11
    case batchTooLarge = 12
    case commitOutOfRange = 13
    case unknownCollector = 14
    case collectorBusy = 15
    case shuttingDown = 16
    case internalError = 17
    case producerReplaced = 18
    case recordTooLarge = 19

    /// The name used in PROTOCOL.md, test vectors and `allegro protocol decode`.
    public var name: String {
        switch self {
        case .malformedFrame: "MALFORMED_FRAME"
        case .frameTooLarge: "FRAME_TOO_LARGE"
        case .unknownFrameType: "UNKNOWN_FRAME_TYPE"
        case .unsupportedVersion: "UNSUPPORTED_VERSION"
        case .authFailed: "AUTH_FAILED"
        case .notPermitted: "NOT_PERMITTED"
        case .unexpectedFrame: "UNEXPECTED_FRAME"
        case .handshakeTimeout: "HANDSHAKE_TIMEOUT"
        case .idleTimeout: "IDLE_TIMEOUT"
        case .tooManyConnections: "TOO_MANY_CONNECTIONS"
        case .cursorUnavailable: "CURSOR_UNAVAILABLE"
        case .batchTooLarge: "BATCH_TOO_LARGE"
        case .commitOutOfRange: "COMMIT_OUT_OF_RANGE"
        case .unknownCollector: "UNKNOWN_COLLECTOR"
        case .collectorBusy: "COLLECTOR_BUSY"
        case .shuttingDown: "SHUTTING_DOWN"
        case .internalError: "INTERNAL_ERROR"
        case .producerReplaced: "PRODUCER_REPLACED"
        case .recordTooLarge: "RECORD_TOO_LARGE"
        }
    }
}
