import CDeflate
import CLZ4
import CZlib

/// CRC-32 (the zlib and gzip polynomial, the same value as zlib's `crc32`), for block checksums.
/// Computed by libdeflate, which folds with carry-less multiplication where the CPU has it.
public enum CRC32 {
    public static func of(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return libdeflate_crc32(0, base, bytes.count)
    }
}

/// The codec new spill blocks are written with (`spill_codec`). Every reader reads all three,
/// whatever it writes, so a relay can change codec over an existing spill.
public enum SpillCodec: String, Sendable, CaseIterable {
    /// Raw deflate (RFC 1951), written and read by libdeflate: the default. The block header's
    /// CRC-32 already checks the payload, so the zlib stream's own Adler-32 would be computed
    /// twice for nothing.
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
///
/// Raw deflate (the default) is written by libdeflate, which compresses a whole block at once:
/// on these records 1.8x zlib's speed at level 1, with a slightly better ratio, in the same
/// format (zlib's inflate reads it). The zlib stream codec stays zlib's own.
public final class BlockCompressor {
    public let codec: SpillCodec
    private var stream = z_stream()
    private var zlibReady = false
    /// libdeflate's compressor for `deflate` (nil for the other codecs, or if it could not be
    /// made); made once, it allocates nothing per block.
    private let deflater: OpaquePointer?
    /// LZ4's compression state (LZ4_sizeofState() bytes), so LZ4 never allocates per block.
    private let lz4State: UnsafeMutableRawBufferPointer

    /// `level` is 1 (fastest) ... 9 (smallest) for `deflate` and `zlib`, as zlib counts (and
    /// libdeflate, which goes on to 12); LZ4 runs at its default speed.
    public init(codec: SpillCodec, level: Int32) {
        self.codec = codec
        lz4State = .allocate(byteCount: codec == .lz4 ? Int(LZ4_sizeofState()) : 0, alignment: 16)
        deflater = codec == .deflate ? libdeflate_alloc_compressor(level) : nil
        if codec == .zlib {
            zlibReady = deflateInit2_(&stream, level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY,
                                      ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
        }
    }

    deinit {
        if zlibReady { deflateEnd(&stream) }
        if let deflater { libdeflate_free_compressor(deflater) }
        lz4State.deallocate()
    }

    /// The most bytes `compress` can produce for `count` input bytes.
    public func bound(_ count: Int) -> Int {
        switch codec {
        case .lz4: Int(LZ4_compressBound(Int32(clamping: count)))
        case .deflate: libdeflate_deflate_compress_bound(deflater, count)
        case .zlib: Int(deflateBound(&stream, uLong(count)))
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
        case .deflate:
            guard let deflater, let source = input.baseAddress else { return nil }
            // 0: the output did not fit (it always does at `bound`).
            let size = libdeflate_deflate_compress(deflater, source, input.count, out, output.count)
            return size > 0 ? size : nil
        case .zlib:
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
/// per block. One thread only (each reader has its own). Raw deflate is read by libdeflate
/// (whichever library wrote it: the format is one), a whole block per call, a little faster
/// than zlib's inflate.
public final class BlockDecompressor {
    private var zlibStream = z_stream()
    private var zlibReady = false
    /// libdeflate's decompressor (nil if it could not be made: deflate blocks then fail to read).
    private let inflater: OpaquePointer?

    public init() {
        zlibReady = inflateInit2_(&zlibStream, 15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
        inflater = libdeflate_alloc_decompressor()
    }

    deinit {
        if zlibReady { inflateEnd(&zlibStream) }
        if let inflater { libdeflate_free_decompressor(inflater) }
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
            guard let inflater else { return false }
            // Exactly `output.count` bytes, or damage: libdeflate checks every bound itself.
            var produced = 0
            return libdeflate_deflate_decompress(inflater, source, input.count, out, output.count, &produced) == LIBDEFLATE_SUCCESS
                && produced == output.count
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
