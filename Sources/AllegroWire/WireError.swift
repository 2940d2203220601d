/// Why bytes could not be decoded. Each case names the ERROR code a relay answers with;
/// after any of them the connection is unusable (framing is lost) and must be closed.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The stream ended inside a frame (only reported when the caller says the input is complete).
    case truncated(have: Int, need: Int)
    /// A frame length of zero: every frame has at least its type byte.
    case emptyFrame
    /// A frame length above the limit in force. The bytes of that frame are never buffered.
    case frameTooLarge(length: Int, limit: Int)
    /// A type byte this protocol version does not define.
    case unknownFrameType(UInt8)
    /// A length field inside the frame runs past the frame's end.
    case fieldOverrun(frame: FrameType, field: String)
    /// Bytes are left in the frame after its last field.
    case trailingBytes(frame: FrameType, count: Int)
    /// A field holds a value the protocol does not allow.
    case invalidValue(frame: FrameType, field: String, reason: String)
    /// A batch holds more records than the limit in force.
    case batchTooLarge(count: Int, limit: Int)

    /// The stable short name used by the test vectors and `allegro protocol decode`.
    public var kind: String {
        switch self {
        case .truncated: "truncated"
        case .emptyFrame: "empty_frame"
        case .frameTooLarge: "frame_too_large"
        case .unknownFrameType: "unknown_frame_type"
        case .fieldOverrun: "field_overrun"
        case .trailingBytes: "trailing_bytes"
        case .invalidValue: "invalid_value"
        case .batchTooLarge: "batch_too_large"
        }
    }

    /// The ERROR code a relay sends for this failure; nil for `truncated`, which a relay never
    /// answers with an ERROR (it waits for the rest of the frame, up to its idle timeout).
    public var code: ErrorCode? {
        switch self {
        case .frameTooLarge: .frameTooLarge
        case .unknownFrameType: .unknownFrameType
        case .batchTooLarge: .batchTooLarge
        case .emptyFrame, .fieldOverrun, .trailingBytes, .invalidValue: .malformedFrame
        case .truncated: nil
        }
    }

    public var description: String {
        switch self {
        case let .truncated(have, need):
            "stream ended inside a frame: have \(have) bytes, the frame needs \(need)"
        case .emptyFrame:
            "frame length 0: a frame has at least its type byte"
        case let .frameTooLarge(length, limit):
            "frame length \(length) exceeds the limit of \(limit) bytes"
        case let .unknownFrameType(type):
            "unknown frame type 0x\(String(type, radix: 16, uppercase: true))"
        case let .fieldOverrun(frame, field):
            "\(frame.name): field \(field) runs past the end of the frame"
        case let .trailingBytes(frame, count):
            "\(frame.name): \(count) unexpected bytes after the last field"
        case let .invalidValue(frame, field, reason):
            "\(frame.name): field \(field): \(reason)"
        case let .batchTooLarge(count, limit):
            "batch of \(count) records exceeds the limit of \(limit)"
        }
    }
}
