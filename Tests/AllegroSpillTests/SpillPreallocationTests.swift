import AllegroPosix
import AllegroSpill
import Foundation
import Glibc
import Testing

/// Zeros written ahead of the newest segment's blocks (`spill_preallocate_bytes`, SPILL.md "Zeros
/// ahead"): the file holds them while it is written, loses them when it is sealed or closed, and
/// a crash that leaves them is cut back by recovery without a report.
@Suite(.serialized) struct SpillPreallocationTests {
    static let zerosAhead = 64 << 10

    @Test func theNewestSegmentHoldsZerosAheadOfItsBlocksAndReadersStopAtTheLastBlock() throws {
        let spill = try SpillFixture(preallocateBytes: Self.zerosAhead)
        try spill.appendBlock(first: 1, count: 10)
        try spill.appendBlock(first: 11, count: 10)
        try spill.writer.sync()
        let name = try #require(spill.segmentFiles.first)
        let segments = spill.writer.catalog.snapshot()
        let written = try #require(segments.last).bytes
        let firstBlockEnd = try #require(segments.last).lastBlockOffset
        #expect(written - SpillWriterTests.segmentHeaderBytes < Self.zerosAhead)
        #expect(spill.size(of: name) == firstBlockEnd + Self.zerosAhead,
                "one step of zeros was written after the first block, and the second block fit in it")
        let tail = try Data(contentsOf: URL(fileURLWithPath: spill.path(name)))[written...]
        #expect(tail.allSatisfy { $0 == 0 })
        #expect(spill.readAll().map(\.0) == Array(1 ... 20), "a reader ends at the last block, not at the zeros")
    }

    @Test func zerosGoOutOneStepPerBlockUntilTheSettingLessAStepLiesAhead() throws {
        let step = SpillWriter.zeroStepBytes
        let spill = try SpillFixture(preallocateBytes: 4 * step)
        let name = SegmentName.name(firstSequence: 1)
        var sizes: [Int] = []
        var ends: [Int] = []
        for block in 0 ..< 6 {
            try spill.appendBlock(first: UInt64(block * 10 + 1), count: 10)
            sizes.append(spill.size(of: name))
            ends.append(try #require(spill.writer.catalog.snapshot().last).bytes)
        }
        #expect(ends[5] - ends[0] < step, "the blocks are small: these steps are the zeros'")
        #expect(sizes[0] == ends[0] + step, "the first block: one step, after the block")
        #expect(zip(sizes.dropFirst(), sizes).prefix(3).allSatisfy { $0 - $1 == step }, "\(sizes)")
        #expect(sizes[3] - ends[3] >= 3 * step, "three steps or more ahead now: \(sizes) \(ends)")
        #expect(sizes[4] == sizes[3] && sizes[5] == sizes[3], "no more zeros until a step of them is used: \(sizes)")
        try spill.writer.sync()
        spill.writer.close()
        #expect(spill.size(of: name) == ends[5])
    }

    @Test func zerosAheadAreCutOffWhenASegmentIsSealedAndWhenTheWriterCloses() throws {
        // Segments of 1 byte: every block seals the segment before it.
        let spill = try SpillFixture(segmentBytes: 1, preallocateBytes: Self.zerosAhead)
        try spill.fill(blocks: 3)
        let segments = spill.writer.catalog.snapshot()
        #expect(segments.count == 3)
        for segment in segments {
            let name = String(segment.path.split(separator: "/").last ?? "")
            #expect(spill.size(of: name) == segment.bytes, "\(name) ends at its last block")
        }
        let report = try spill.restart()
        #expect(report.damage.isEmpty && report.lastSequence == 30, "\(report.damage)")
    }

    @Test func aCrashThatLeavesZerosAheadIsCutBackWithoutReportingDamage() throws {
        let spill = try SpillFixture(preallocateBytes: Self.zerosAhead)
        try spill.appendBlock(first: 1, count: 10)
        try spill.appendBlock(first: 11, count: 10)
        try spill.writer.sync()
        let written = try #require(spill.writer.catalog.snapshot().last).bytes
        let name = try #require(spill.segmentFiles.first)
        #expect(spill.size(of: name) > written)

        // No close: the writer is dropped as a kill -9 would leave it.
        let report = try spill.restart(durableThrough: 20)
        #expect(report.damage.isEmpty && report.lostRecords == 0 && report.unconfirmedRecords == 0, "\(report.damage)")
        #expect(report.lastSequence == 20)
        #expect(spill.size(of: name) == written, "recovery cut the zeros off")
        #expect(!FileManager.default.fileExists(atPath: spill.path("quarantine")), "nothing was set aside")
        #expect(spill.readAll().map(\.0) == Array(1 ... 20))
    }

    @Test func aTornBlockAmongTheZerosIsStillATornTail() throws {
        let spill = try SpillFixture(preallocateBytes: Self.zerosAhead)
        try spill.appendBlock(first: 1, count: 10)
        try spill.writer.sync()
        let first = try #require(spill.writer.catalog.snapshot().last)
        try spill.appendBlock(first: 11, count: 10)
        let name = try #require(spill.segmentFiles.first)
        // The second block's last bytes never reached the disk: zero them, as a crash would.
        let second = try #require(spill.writer.catalog.snapshot().last)
        let file = try File.open(spill.path(name))
        try file.write([UInt8](repeating: 0, count: 8), at: second.bytes - 8)
        file.close()

        let report = try spill.restart(durableThrough: 10)
        #expect(report.damage.map(\.kind) == [.tornTail], "\(report.damage)")
        #expect(report.lostRecords == 0 && report.unconfirmedRecords == 10)
        #expect(spill.size(of: name) == first.bytes)
        #expect(spill.readAll().map(\.0) == Array(1 ... 10))
    }

    @Test func aSegmentWithOnlyZerosAfterItsHeaderIsRemovedAsEmpty() throws {
        let spill = try SpillFixture(preallocateBytes: Self.zerosAhead)
        try spill.fill(blocks: 2)
        let empty = spill.path(SegmentName.name(firstSequence: 21))
        // A segment header from SPILL.md: "ALSG", version 1, reserved, first number 21.
        var header = Array("ALSG".utf8) + [1, 0, 0, 0]
        withUnsafeBytes(of: UInt64(21).littleEndian) { header += $0 }
        let file = try File.open(empty, create: true)
        try file.write(header, at: 0)
        try file.write([UInt8](repeating: 0, count: Self.zerosAhead), at: SpillWriterTests.segmentHeaderBytes)
        file.close()

        let report = try spill.restart()
        #expect(report.damage.isEmpty && report.lastSequence == 20, "\(report.damage)")
        #expect(!FileManager.default.fileExists(atPath: empty))
    }

    @Test func aFullDiskWhileWritingZerosAheadLeavesTheBlockAppendedAsWithoutThem() throws {
        let spill = try SpillFixture(preallocateBytes: Self.zerosAhead)
        // The first pwrite in the segment's directory is the header's; fail the next, the zeros.
        let fault = SystemFaults.inject(.pwrite, errno: ENOSPC, pathContaining: spill.directory, skip: 1)
        defer { SystemFaults.remove(fault) }
        try spill.appendBlock(first: 1, count: 10)
        #expect(SystemFaults.fired(fault) == 1)
        let name = try #require(spill.segmentFiles.first)
        #expect(spill.size(of: name) == spill.writer.catalog.snapshot().last?.bytes, "no zeros, the block appended")
        try spill.writer.sync()
        spill.writer.close()
        let report = try spill.restart()
        #expect(report.damage.isEmpty && report.lastSequence == 10)
    }
}
