import AllegroSpill
import CZlib
import Testing

/// The default codec's blocks are written and read by libdeflate, and spills already on disk
/// were written by zlib: the format is one (raw deflate, RFC 1951; the zlib polynomial's
/// CRC-32), so each library reads what the other wrote, and a relay can move between versions
/// in either direction over the same spill.
struct DeflateCompatibilityTests {
    /// Runs `call` (deflate or inflate) once over all of `input` into `size` bytes of output:
    /// its status and the output bytes it filled.
    static func zlibPass(_ stream: inout z_stream, _ input: [UInt8], size: Int,
                         _ call: (inout z_stream) -> Int32) -> (status: Int32, output: [UInt8]) {
        var input = input, out = [UInt8](repeating: 0, count: size)
        let status = input.withUnsafeMutableBytes { source in
            out.withUnsafeMutableBytes { target in
                stream.next_in = source.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_in = uInt(source.count)
                stream.next_out = target.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(target.count)
                return call(&stream)
            }
        }
        return (status, Array(out.prefix(size - Int(stream.avail_out))))
    }

    /// Raw deflate of `input` by zlib, as relays before libdeflate wrote codec 2 blocks.
    static func zlibDeflate(_ input: [UInt8]) throws -> [UInt8] {
        var stream = z_stream()
        try #require(deflateInit2_(&stream, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK)
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        let pass = zlibPass(&stream, input, size: bound) { deflate(&$0, Z_FINISH) }
        try #require(pass.status == Z_STREAM_END)
        return pass.output
    }

    /// zlib's inflate of raw deflate that must expand to exactly `size` bytes; nil otherwise.
    static func zlibInflate(_ input: [UInt8], size: Int) throws -> [UInt8]? {
        var stream = z_stream()
        try #require(inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK)
        defer { inflateEnd(&stream) }
        let pass = zlibPass(&stream, input, size: size) { inflate(&$0, Z_FINISH) }
        return pass.status == Z_STREAM_END && pass.output.count == size ? pass.output : nil
    }

    /// Blocks of a trickle's size and a full one.
    static let blocks: [[UInt8]] = [Array(SpillCodecTests.block.prefix(1)), Array(SpillCodecTests.block.prefix(184)),
                                    Array(SpillCodecTests.block.prefix(3_500)), SpillCodecTests.block]

    @Test func aBlockZlibWroteIsReadAsTheDefaultCodec() throws {
        for block in Self.blocks {
            let written = try Self.zlibDeflate(block)
            #expect(SpillCodecTests.decompress(.deflate, written, size: block.count) == block, "\(block.count) bytes")
        }
    }

    @Test func aBlockTheDefaultCodecWroteIsReadByZlib() throws {
        for block in Self.blocks {
            let written = try SpillCodecTests.compress(.deflate, block)
            #expect(try Self.zlibInflate(written, size: block.count) == block, "\(block.count) bytes")
        }
    }

    @Test func theBlockChecksumIsZlibsCRC32() {
        var generator = SystemRandomNumberGenerator()
        for size in [0, 1, 7, 64, 4_099, 65_536 + 3] {
            let bytes = (0 ..< size).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }
            let zlibs = bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
            #expect(bytes.withUnsafeBytes { CRC32.of($0) } == zlibs, "\(size) bytes")
        }
        // The check value of the CRC-32 that zlib and gzip use.
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32.of($0) } == 0xCBF4_3926)
    }
}
