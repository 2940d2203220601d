import CZlib

/// CRC-32 (the zlib polynomial), for block checksums.
public enum CRC32 {
    public static func of(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return UInt32(truncatingIfNeeded: crc32(0, base.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
    }
}

/// A zlib compressor whose stream is set up once and reset per block, so compressing a block
/// allocates nothing.
public final class Deflater {
    private var stream = z_stream()
    private var ready = false
    public let level: Int32

    public init(level: Int32) {
        self.level = level
        ready = deflateInit_(&stream, level, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
    }

    deinit { if ready { deflateEnd(&stream) } }

    /// The most bytes `compress` can produce for `count` input bytes.
    public func bound(_ count: Int) -> Int { Int(deflateBound(&stream, uLong(count))) }

    /// Compresses `input` into `output` (at least `bound(input.count)` bytes); the size written,
    /// or nil if zlib failed.
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        guard ready, deflateReset(&stream) == Z_OK, let out = output.baseAddress else { return nil }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        stream.next_out = out.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(output.count)
        guard deflate(&stream, Z_FINISH) == Z_STREAM_END else { return nil }
        return output.count - Int(stream.avail_out)
    }
}

/// A zlib decompressor, set up once and reset per block.
public final class Inflater {
    private var stream = z_stream()
    private var ready = false

    public init() {
        ready = inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
    }

    deinit { if ready { inflateEnd(&stream) } }

    /// Decompresses `input`, which must expand to exactly `output.count` bytes; false otherwise.
    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        guard ready, inflateReset(&stream) == Z_OK, let out = output.baseAddress, input.count > 0 else { return false }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        stream.next_out = out.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(output.count)
        return inflate(&stream, Z_FINISH) == Z_STREAM_END && stream.avail_out == 0
    }
}
