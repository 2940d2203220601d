/// Protocol-wide constants and the limits a decoder enforces.
public enum Wire {
    /// The protocol versions this implementation speaks.
    public static let version: UInt16 = 1
    /// The four bytes every HELLO starts with.
    public static let magic: [UInt8] = Array("ALGR".utf8)
    /// Bytes in the length prefix.
    public static let lengthPrefixSize = 4
    /// The largest frame length (type byte plus body) any peer may ever declare.
    public static let absoluteMaxFrameLength = 16 * 1024 * 1024
    /// The frame limit before the handshake completes: a HELLO is small.
    public static let handshakeMaxFrameLength = 4096
    /// Longest token accepted in a HELLO.
    public static let maxTokenLength = 1024
    /// Longest ERROR message.
    public static let maxErrorMessageLength = 1024
    /// What a PUBLISH or DELIVER frame's `length` counts besides its records: the type byte and
    /// the u32 record count.
    public static let batchOverhead = 5

    /// The most record bytes one PUBLISH or DELIVER frame can carry under `maxFrameLength`.
    public static func maxBatchedRecordBytes(maxFrameLength: Int) -> Int { maxFrameLength - batchOverhead }
}

/// The limits a decoder applies to what it reads. The relay tightens them after the handshake.
public struct DecodeLimits: Sendable, Equatable {
    /// Largest frame length (type byte plus body) accepted.
    public var maxFrameLength: Int
    /// Most records accepted in one PUBLISH or DELIVER.
    public var maxBatchRecords: Int

    public init(maxFrameLength: Int, maxBatchRecords: Int) {
        self.maxFrameLength = min(max(maxFrameLength, 1), Wire.absoluteMaxFrameLength)
        self.maxBatchRecords = max(maxBatchRecords, 1)
    }

    /// What a relay enforces before a HELLO has been accepted.
    public static let handshake = DecodeLimits(maxFrameLength: Wire.handshakeMaxFrameLength, maxBatchRecords: 1)
    /// The defaults a relay advertises in WELCOME.
    public static let standard = DecodeLimits(maxFrameLength: 1 << 20, maxBatchRecords: 4096)
    /// The widest limits the protocol allows (for tools that read captured streams).
    public static let permissive = DecodeLimits(maxFrameLength: Wire.absoluteMaxFrameLength, maxBatchRecords: Int(UInt32.max))
}
