import AllegroPosix
import AllegroWire

/// Why a client call failed, and whether trying again can help.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    /// Could not reach the relay (refused, unreachable, timed out connecting).
    case unreachable(SocketAddress, SystemError)
    /// The relay answered with an ERROR frame.
    case refused(code: UInt16, message: String)
    /// The relay sent something this client cannot accept (a bug on one side).
    case protocolViolation(String)
    /// The connection ended unexpectedly.
    case disconnected(String)
    /// Nothing happened within the time allowed.
    case timedOut(String)
    /// A record field was too long to encode.
    case recordTooLarge(RecordTooLarge)

    public var description: String {
        switch self {
        case let .unreachable(address, error): "cannot reach the relay at \(address): \(error)"
        case let .refused(code, message):
            "the relay refused: \(ErrorCode(rawValue: code)?.name ?? "ERROR \(code)"): \(message)"
        case let .protocolViolation(what): "protocol violation: \(what)"
        case let .disconnected(why): "disconnected: \(why)"
        case let .timedOut(what): "timed out: \(what)"
        case let .recordTooLarge(error): error.description
        }
    }

    /// Errors that reconnecting cannot fix: a wrong token, a version or role mismatch, a
    /// request the relay will never grant.
    public var isPermanent: Bool {
        guard case let .refused(code, _) = self, let known = ErrorCode(rawValue: code) else {
            if case .recordTooLarge = self { return true }
            if case .protocolViolation = self { return true }
            return false
        }
        switch known {
        case .authFailed, .unsupportedVersion, .notPermitted, .unknownCollector, .cursorUnavailable,
             .frameTooLarge, .batchTooLarge, .malformedFrame, .unknownFrameType, .unexpectedFrame,
             .commitOutOfRange, .producerReplaced, .recordTooLarge:
            return true
        default:
            return false
        }
    }
}
