import AllegroSpill
import Foundation
import Testing

/// The spill's three codecs (SPILL.md): each round-trips, refuses what is not its own, and a
/// spill whose blocks were written with different codecs (a relay whose `spill_codec` changed)
/// recovers and reads back whole.
@Suite struct SpillCodecTests {
    /// 64 KiB of varied text, like a block of JSON records: compressible, not one repeated byte.
    static let block: [UInt8] = {
        var bytes: [UInt8] = []
        var index = 0
        while bytes.count < 64 * 1024 {
            bytes += Array("{\"seq\":\(index),\"tool\":\"terminal\",\"ms\":\(index * 7919 % 5000),\"ok\":\(index % 3 != 0)}".utf8)
            index += 1
        }
        return Array(bytes.prefix(64 * 1024))
    }()

    static func compress(_ codec: SpillCodec, _ input: [UInt8]) throws -> [UInt8] {
        let compressor = BlockCompressor(codec: codec, level: 1)
        var out = [UInt8](repeating: 0, count: compressor.bound(input.count))
        let size = out.withUnsafeMutableBytes { output in input.withUnsafeBytes { compressor.compress($0, into: output) } }
        return Array(out.prefix(try #require(size)))
    }

    static func decompress(_ codec: BlockHeader.Codec, _ input: [UInt8], size: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: size)
        let ok = out.withUnsafeMutableBytes { output in input.withUnsafeBytes { BlockDecompressor().decompress(codec, $0, into: output) } }
        return ok ? out : nil
    }

    @Test(arguments: SpillCodec.allCases)
    func eachCodecRoundTripsABlockAndCompressesIt(codec: SpillCodec) throws {
        let compressed = try Self.compress(codec, Self.block)
        #expect(compressed.count < Self.block.count / 2, "\(codec): \(compressed.count) bytes")
        #expect(Self.decompress(codec.blockCodec, compressed, size: Self.block.count) == Self.block)
    }

    /// A group commit's blocks of a few bytes or KiB and full ones, in turn: one compressor,
    /// reset between them, round-trips every size.
    @Test(arguments: SpillCodec.allCases)
    func blocksOfEverySizeInTurnEachRoundTripThroughOneCompressor(codec: SpillCodec) throws {
        let compressor = BlockCompressor(codec: codec, level: 1)
        for size in [100, 3_000, 8 << 10, (8 << 10) + 1, 64 << 10, 1, 8 << 10, 40_000] {
            let input = Array(Self.block.prefix(size))
            var out = [UInt8](repeating: 0, count: compressor.bound(size))
            let written = out.withUnsafeMutableBytes { output in input.withUnsafeBytes { compressor.compress($0, into: output) } }
            let compressed = Array(out.prefix(try #require(written, "\(codec), \(size) bytes")))
            #expect(Self.decompress(codec.blockCodec, compressed, size: size) == input, "\(codec), \(size) bytes")
        }
    }

    @Test(arguments: SpillCodec.allCases)
    func aPayloadThatDoesNotExpandToExactlyTheHeadersSizeIsRefused(codec: SpillCodec) throws {
        let compressed = try Self.compress(codec, Self.block)
        #expect(Self.decompress(codec.blockCodec, compressed, size: Self.block.count - 1) == nil, "too small a size")
        #expect(Self.decompress(codec.blockCodec, compressed, size: Self.block.count + 1) == nil, "too large a size")
        #expect(Self.decompress(codec.blockCodec, Array(compressed.prefix(compressed.count / 2)), size: Self.block.count) == nil,
                "a cut payload")
    }

    @Test func aPayloadIsReadOnlyWithTheCodecItsHeaderNames() throws {
        for codec in SpillCodec.allCases {
            let compressed = try Self.compress(codec, Self.block)
            for other in SpillCodec.allCases where other != codec {
                #expect(Self.decompress(other.blockCodec, compressed, size: Self.block.count) == nil, "\(codec) read as \(other)")
            }
        }
    }

    @Test func aSpillWrittenInEveryCodecInTurnRecoversAndReadsBackWhole() throws {
        let spill = try SpillFixture(codec: .zlib)
        try spill.appendBlock(first: 1, count: 10)
        try spill.writer.sync()
        spill.writer.close()
        var first: UInt64 = 11
        for codec in [SpillCodec.deflate, .lz4, .zlib] {
            let report = try spill.restart(codec: codec)
            #expect(report.damage.isEmpty, "\(report.damage)")
            try spill.appendBlock(first: first, count: 10)
            try spill.writer.sync()
            spill.writer.close()
            first += 10
        }
        let report = try spill.restart()
        #expect(report.damage.isEmpty)
        #expect(report.lastSequence == 40)
        #expect(spill.readAll().map(\.0) == Array(1 ... 40))
        #expect(spill.readAll().map(\.1) == (1 ... 40).map { "p-\($0)" })
        // Each restart began a segment, so the segments' first blocks name the codecs in turn.
        let codecs = try spill.segmentFiles.map { name in
            let bytes = try Data(contentsOf: URL(fileURLWithPath: spill.path(name)))
            let header = bytes.dropFirst(SpillWriterTests.segmentHeaderBytes).prefix(BlockHeader.size)
            return try #require(Array(header).withUnsafeBytes { BlockHeader.decode($0) }).codec
        }
        #expect(codecs == [.zlib, .deflate, .lz4, .zlib])
    }

    @Test func anLZ4PayloadThatPassesItsChecksumButDoesNotDecodeIsDamageNotACrash() throws {
        let spill = try SpillFixture(codec: .lz4)
        try spill.appendBlock(first: 1, count: 10)
        try spill.appendBlock(first: 11, count: 10)
        try spill.writer.sync()
        spill.writer.close()
        // Garble the second block's payload and give its header the garbled payload's CRC, as a
        // bug (not a disk) would: only the codec can tell.
        let name = try #require(spill.segmentFiles.first)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: spill.path(name)))
        let firstStart = SpillWriterTests.segmentHeaderBytes
        let firstHeader = try #require(Array(bytes[firstStart ..< firstStart + BlockHeader.size]).withUnsafeBytes { BlockHeader.decode($0) })
        let secondStart = firstStart + firstHeader.totalSize
        var second = try #require(Array(bytes[secondStart ..< secondStart + BlockHeader.size]).withUnsafeBytes { BlockHeader.decode($0) })
        let payloadStart = secondStart + BlockHeader.size
        for offset in payloadStart ..< secondStart + second.totalSize { bytes[offset] = 0xff }
        second.payloadChecksum = Array(bytes[payloadStart ..< secondStart + second.totalSize]).withUnsafeBytes { CRC32.of($0) }
        bytes.replaceSubrange(secondStart ..< payloadStart, with: second.encoded())
        try bytes.write(to: URL(fileURLWithPath: spill.path(name)))

        let report = try spill.restart()
        #expect(report.damage.count == 1, "\(report.damage)")
        #expect(report.lastSequence == 10)
        #expect(spill.readAll().map(\.0) == Array(1 ... 10))
    }
}
