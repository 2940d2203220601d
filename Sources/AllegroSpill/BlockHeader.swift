/// The 64-byte header in front of every spill block (layout in protocol/SPILL.md). It names the
/// block's records and codec and carries two checksums, so any block can be verified and
/// skipped on its own.
public struct BlockHeader: Equatable, Sendable {
    public static let size = 64
    public static let magic: UInt32 = 0x4253_4C41 // "ALSB" little-endian
    public static let version: UInt16 = 1

    public enum Codec: UInt8, Sendable {
        /// A zlib stream (RFC 1950).
        case zlib = 1
        /// Raw deflate (RFC 1951).
        case deflate = 2
        /// LZ4 block format.
        case lz4 = 3
    }

    public var codec: Codec
    public var firstSequence: UInt64
    public var recordCount: UInt32
    public var uncompressedSize: UInt32
    public var compressedSize: UInt32
    /// CRC-32 of the compressed payload.
    public var payloadChecksum: UInt32
    public var firstIngestNanos: UInt64
    public var lastIngestNanos: UInt64

    public var lastSequence: UInt64 { firstSequence + UInt64(recordCount) - 1 }
    /// Header plus payload.
    public var totalSize: Int { Self.size + Int(compressedSize) }

    public init(codec: Codec, firstSequence: UInt64, recordCount: UInt32, uncompressedSize: UInt32,
                compressedSize: UInt32, payloadChecksum: UInt32, firstIngestNanos: UInt64, lastIngestNanos: UInt64) {
        self.codec = codec
        self.firstSequence = firstSequence
        self.recordCount = recordCount
        self.uncompressedSize = uncompressedSize
        self.compressedSize = compressedSize
        self.payloadChecksum = payloadChecksum
        self.firstIngestNanos = firstIngestNanos
        self.lastIngestNanos = lastIngestNanos
    }

    /// Writes the header, with its own checksum, into 64 bytes at `out`.
    public func encode(into out: UnsafeMutableRawPointer) {
        out.initializeMemory(as: UInt8.self, repeating: 0, count: Self.size)
        out.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: Self.version.littleEndian, toByteOffset: 4, as: UInt16.self)
        out.storeBytes(of: codec.rawValue, toByteOffset: 6, as: UInt8.self)
        out.storeBytes(of: firstSequence.littleEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: recordCount.littleEndian, toByteOffset: 16, as: UInt32.self)
        out.storeBytes(of: uncompressedSize.littleEndian, toByteOffset: 20, as: UInt32.self)
        out.storeBytes(of: compressedSize.littleEndian, toByteOffset: 24, as: UInt32.self)
        out.storeBytes(of: payloadChecksum.littleEndian, toByteOffset: 28, as: UInt32.self)
        out.storeBytes(of: firstIngestNanos.littleEndian, toByteOffset: 32, as: UInt64.self)
        out.storeBytes(of: lastIngestNanos.littleEndian, toByteOffset: 40, as: UInt64.self)
        let checksum = CRC32.of(UnsafeRawBufferPointer(start: out, count: 60))
        out.storeBytes(of: checksum.littleEndian, toByteOffset: 60, as: UInt32.self)
    }

    /// The header's 64 bytes, with its checksum.
    public func encoded() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.size) { buffer, count in
            if let base = buffer.baseAddress { encode(into: base) }
            count = Self.size
        }
    }

    /// Reads and verifies a header: nil unless the magic, version, codec, checksum and sizes
    /// are all sound.
    public static func decode(_ bytes: UnsafeRawBufferPointer, maxUncompressed: Int = 64 << 20) -> BlockHeader? {
        guard bytes.count >= size, let base = bytes.baseAddress else { return nil }
        func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        guard u32(0) == magic,
              UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) == version,
              u32(60) == CRC32.of(UnsafeRawBufferPointer(start: base, count: 60)),
              let codec = Codec(rawValue: bytes[6]) else { return nil }
        let header = BlockHeader(codec: codec, firstSequence: u64(8), recordCount: u32(16), uncompressedSize: u32(20),
                                 compressedSize: u32(24), payloadChecksum: u32(28), firstIngestNanos: u64(32),
                                 lastIngestNanos: u64(40))
        guard header.recordCount >= 1, header.firstSequence >= 1, header.firstSequence <= UInt64.max / 2,
              Int(header.uncompressedSize) <= maxUncompressed, header.compressedSize >= 1,
              Int(header.compressedSize) <= maxUncompressed + maxUncompressed / 8 + 1024 else { return nil }
        return header
    }
}
