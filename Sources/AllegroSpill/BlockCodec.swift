import CLZ4
import CZlib

/// CRC-32 (the zlib polynomial), for block checksums.
public enum CRC32 {
    public static func of(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return UInt32(truncatingIfNeeded: crc32(0, base.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
    }
}

/// The codec new spill blocks are written with (`spill_codec`). Every reader reads all three,
/// whatever it writes, so a relay can change codec over an existing spill.
public enum SpillCodec: String, Sendable, CaseIterable {
    /// Raw deflate (RFC 1951) from zlib: the default. The block header's CRC-32 already checks
    /// the payload, so the zlib stream's own Adler-32 would be computed twice for nothing.
    case deflate
    /// A zlib stream (RFC 1950): what blocks were before `deflate`; still written on request.
    case zlib
    /// LZ4 block format (liblz4): about 7x deflate's speed both ways at level 1, for 3/4 of its
    /// compression (BENCHMARKS.md, "Codecs"): for hosts where the spill thread's CPU, not the
    /// disk, limits throughput.
    case lz4

    public var blockCodec: BlockHeader.Codec {
        switch self {
        case .deflate: .deflate
        case .zlib: .zlib
        case .lz4: .lz4
        }
    }
}

/// Compresses spill blocks with one codec. Its state is set up once and reset per block, so
/// compressing a block allocates nothing. One thread only (the spill thread).
public final class BlockCompressor {
    public let codec: SpillCodec
    private var stream = z_stream()
    private var zlibReady = false
    /// LZ4's compression state (LZ4_sizeofState() bytes), so LZ4 never allocates per block.
    private let lz4State: UnsafeMutableRawBufferPointer

    /// `level` is zlib's (1 fastest ... 9 smallest) for `deflate` and `zlib`; LZ4 runs at its
    /// default speed.
    public init(codec: SpillCodec, level: Int32) {
        self.codec = codec
        lz4State = .allocate(byteCount: codec == .lz4 ? Int(LZ4_sizeofState()) : 0, alignment: 16)
        if codec != .lz4 {
            // windowBits 15: a zlib stream; -15: raw deflate with the same 32 KiB window.
            let windowBits: Int32 = codec == .zlib ? 15 : -15
            zlibReady = deflateInit2_(&stream, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY,
                                      ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
        }
    }

    deinit {
        if zlibReady { deflateEnd(&stream) }
        lz4State.deallocate()
    }

    /// The most bytes `compress` can produce for `count` input bytes.
    public func bound(_ count: Int) -> Int {
        switch codec {
        case .lz4: Int(LZ4_compressBound(Int32(clamping: count)))
        case .deflate, .zlib: Int(deflateBound(&stream, uLong(count)))
        }
    }

    /// Compresses `input` into `output` (at least `bound(input.count)` bytes); the size written,
    /// or nil if the codec failed.
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        guard let out = output.baseAddress else { return nil }
        switch codec {
        case .lz4:
            guard let state = lz4State.baseAddress, let source = input.baseAddress, input.count <= Int(LZ4_MAX_INPUT_SIZE) else { return nil }
            let size = LZ4_compress_fast_extState(state, source.assumingMemoryBound(to: CChar.self), out.assumingMemoryBound(to: CChar.self),
                                                  Int32(input.count), Int32(clamping: output.count), 1)
            return size > 0 ? Int(size) : nil
        case .deflate, .zlib:
            guard zlibReady, deflateReset(&stream) == Z_OK else { return nil }
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = out.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(output.count)
            guard deflate(&stream, Z_FINISH) == Z_STREAM_END else { return nil }
            return output.count - Int(stream.avail_out)
        }
    }
}

/// Decompresses spill blocks of every codec, as each block's header says. Set up once and reset
/// per block. One thread only (each reader has its own).
public final class BlockDecompressor {
    private var zlibStream = z_stream()
    private var rawStream = z_stream()
    private var zlibReady = false
    private var rawReady = false

    public init() {
        zlibReady = inflateInit2_(&zlibStream, 15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
        rawReady = inflateInit2_(&rawStream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
    }

    deinit {
        if zlibReady { inflateEnd(&zlibStream) }
        if rawReady { inflateEnd(&rawStream) }
    }

    /// Decompresses `input`, which must expand to exactly `output.count` bytes; false otherwise
    /// (damaged input included: every codec here checks its bounds).
    public func decompress(_ codec: BlockHeader.Codec, _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        guard let out = output.baseAddress, let source = input.baseAddress, input.count > 0 else { return false }
        switch codec {
        case .lz4:
            guard input.count <= Int(Int32.max), output.count <= Int(Int32.max) else { return false }
            let size = LZ4_decompress_safe(source.assumingMemoryBound(to: CChar.self), out.assumingMemoryBound(to: CChar.self),
                                           Int32(input.count), Int32(output.count))
            return Int(size) == output.count
        case .zlib:
            return zlibReady && Self.inflateAll(&zlibStream, source, input.count, out, output.count)
        case .deflate:
            return rawReady && Self.inflateAll(&rawStream, source, input.count, out, output.count)
        }
    }

    private static func inflateAll(_ stream: inout z_stream, _ source: UnsafeRawPointer, _ count: Int,
                                   _ out: UnsafeMutableRawPointer, _ capacity: Int) -> Bool {
        guard inflateReset(&stream) == Z_OK else { return false }
        stream.next_in = UnsafeMutablePointer(mutating: source.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(count)
        stream.next_out = out.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(capacity)
        return inflate(&stream, Z_FINISH) == Z_STREAM_END && stream.avail_out == 0
    }
}
