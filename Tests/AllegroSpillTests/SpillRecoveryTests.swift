import AllegroPosix
import AllegroSpill
import Foundation
import Testing

/// Start-up recovery against damaged spill directories, in-process: what it keeps, what it puts
/// right, and that it counts every record it could not keep exactly once.
@Suite(.serialized) struct SpillRecoveryTests {
    /// Rewrites the header of the first block in segment `name` through `change`, with a valid
    /// header checksum (as a buggy writer or a careful attacker would).
    func rewriteFirstBlockHeader(_ spill: SpillFixture, _ name: String, _ change: (inout BlockHeader) -> Void) throws {
        let file = try File.open(spill.path(name))
        defer { file.close() }
        var bytes = [UInt8](repeating: 0, count: BlockHeader.size)
        _ = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: 16) }
        var header = try #require(bytes.withUnsafeBytes { BlockHeader.decode($0) })
        change(&header)
        try file.write(header.encoded(), at: 16)
    }

    @Test func aTruncatedSealedSegmentCountsEveryRecordItLost() throws {
        let spill = try SpillFixture(segmentBytes: 1)
        try spill.fill(blocks: 5)
        #expect(spill.segmentFiles.count == 5, "one block per segment: \(spill.segmentFiles)")
        #expect(truncate(spill.path(spill.segmentFiles[2]), 16 + 64 + 5) == 0)

        let report = try spill.restart(durableThrough: 50)
        #expect(report.lostRecords == 10 && report.unconfirmedRecords == 0, "\(report.damage)")
        #expect(report.damage.count == 1 && report.damage.first?.kind == .tornTail)
        #expect(spill.readAll().map(\.0) == Array(1 ... 20) + Array(31 ... 50))
    }

    @Test func aDeletedMiddleSegmentIsCountedAsMissing() throws {
        let spill = try SpillFixture(segmentBytes: 1)
        try spill.fill(blocks: 5)
        try FileManager.default.removeItem(atPath: spill.path(spill.segmentFiles[1]))

        let report = try spill.restart()
        #expect(report.damage.map(\.kind) == [.missing] && report.lostRecords == 10, "\(report.damage)")
        #expect(report.damage.first?.segment == "11 ... 20")
        #expect(report.countedGaps == [11 ... 20])
    }

    @Test func aGapThatStoredSkipsExplainIsNoLoss() throws {
        let spill = try SpillFixture()
        try spill.appendBlock(first: 1, count: 10)
        try spill.appendBlock(first: 21, count: 10)
        try spill.writer.sync()
        spill.writer.close()

        let skipped = try spill.restart(marksAfter: 100, explained: [11 ... 20])
        #expect(skipped.damage.isEmpty && skipped.repairs.isEmpty, "\(skipped.damage) \(skipped.repairs)")
        let unexplained = try spill.restart(marksAfter: 100)
        #expect(unexplained.damage.map(\.kind) == [.missing] && unexplained.lostRecords == 10, "\(unexplained.damage)")
    }

    @Test func aSegmentWithABadMagicIsRewrittenFromItsFirstBlockAndLosesNothing() throws {
        let spill = try SpillFixture(segmentBytes: 1)
        try spill.fill(blocks: 3)
        let name = spill.segmentFiles[1]
        let file = try File.open(spill.path(name))
        try file.write([0x58, 0x58, 0x58, 0x58], at: 0)
        file.close()

        let report = try spill.restart()
        #expect(report.damage.isEmpty && report.lostRecords == 0, "\(report.damage)")
        #expect(report.repairs.map(\.kind) == [.segmentHeader])
        #expect(spill.readAll().map(\.0) == Array(1 ... 30))
        #expect(try spill.restart().repairs.isEmpty, "the repair is on disk")
    }

    @Test func aSegmentWithNeitherHeaderNorFirstBlockIsQuarantinedAndItsRecordsCounted() throws {
        let spill = try SpillFixture(segmentBytes: 1)
        try spill.fill(blocks: 3)
        let file = try File.open(spill.path(spill.segmentFiles[1]))
        try file.write([UInt8](repeating: 0x55, count: 80), at: 0)
        file.close()

        let report = try spill.restart()
        #expect(report.damage.map(\.kind) == [.unreadableSegment] && report.lostRecords == 10, "\(report.damage)")
        #expect(spill.readAll().map(\.0) == Array(1 ... 10) + Array(21 ... 30))
        #expect(FileManager.default.fileExists(atPath: report.damage[0].quarantineFile))
    }

    @Test func swappedSegmentNamesAreRenamedNotDiscarded() throws {
        let spill = try SpillFixture(segmentBytes: 1)
        try spill.fill(blocks: 4)
        let names = spill.segmentFiles
        let (second, fourth) = (spill.path(names[1]), spill.path(names[3]))
        try FileManager.default.moveItem(atPath: second, toPath: second + ".x")
        try FileManager.default.moveItem(atPath: fourth, toPath: second)
        try FileManager.default.moveItem(atPath: second + ".x", toPath: fourth)

        let report = try spill.restart()
        #expect(report.damage.isEmpty && report.lostRecords == 0, "\(report.damage)")
        #expect(report.repairs.map(\.kind) == [.renamedSegment, .renamedSegment])
        #expect(spill.segmentFiles == names)
        #expect(spill.readAll().map(\.0) == Array(1 ... 40))
    }

    @Test func aBlockHeaderThatClaimsMoreRecordsThanItHoldsIsCorrectedAndTheNextBlockKept() throws {
        let spill = try SpillFixture()
        try spill.fill(blocks: 3)
        let name = try #require(spill.segmentFiles.first)
        try rewriteFirstBlockHeader(spill, name) { $0.recordCount += 5 }

        // Headers only (nothing inflated for marks): the overlap with the next block decides.
        let report = try spill.restart(marksAfter: 1000)
        #expect(report.damage.isEmpty && report.lostRecords == 0, "\(report.damage)")
        #expect(report.repairs.map(\.kind) == [.blockHeader], "\(report.repairs)")
        #expect(report.lastSequence == 30)
        #expect(spill.readAll().map(\.0) == Array(1 ... 30))
        #expect(try spill.restart(marksAfter: 1000).repairs.isEmpty, "the corrected header is on disk")
    }

    @Test func aBlockHeaderThatClaimsFewerRecordsIsCorrectedWhenItsRecordsAreRead() throws {
        for marksAfter: UInt64 in [0, 1000] {
            let spill = try SpillFixture()
            try spill.fill(blocks: 3)
            let name = try #require(spill.segmentFiles.first)
            try rewriteFirstBlockHeader(spill, name) { $0.recordCount -= 4 }

            let report = try spill.restart(marksAfter: marksAfter)
            #expect(report.damage.isEmpty && report.repairs.map(\.kind) == [.blockHeader], "\(marksAfter): \(report.damage)")
            #expect(spill.readAll().map(\.0) == Array(1 ... 30))
        }
    }

    @Test func segmentNamesThatAreNotFilesAreSetAsideAndTheRestIsKept() throws {
        let spill = try SpillFixture(segmentBytes: 1)
        try spill.fill(blocks: 4)
        let names = spill.segmentFiles
        try FileManager.default.removeItem(atPath: spill.path(names[1]))
        try FileManager.default.createDirectory(atPath: spill.path(names[1]), withIntermediateDirectories: false)
        try FileManager.default.removeItem(atPath: spill.path(names[2]))
        try FileManager.default.createSymbolicLink(atPath: spill.path(names[2]), withDestinationPath: "/nonexistent/allegro")

        let report = try spill.restart()
        #expect(report.damage.map(\.kind) == [.wrongType, .wrongType], "\(report.damage)")
        #expect(report.lostRecords == 20)
        #expect(spill.readAll().map(\.0) == Array(1 ... 10) + Array(31 ... 40))
        let again = try spill.restart(explained: report.countedGaps)
        #expect(again.damage.isEmpty && again.lostRecords == 0, "counted once, not at every start: \(again.damage)")
    }

    @Test func aSpillThatIsARegularFileIsRenamedAsideAndMadeAnew() throws {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-spill-file-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let spill = parent + "/spill"
        #expect(FileManager.default.createFile(atPath: spill, contents: Data("not a directory".utf8)))

        let report = try SpillRecovery.run(directory: spill, marksAfter: 0)
        #expect(report.damage.map(\.kind) == [.wrongType])
        #expect(try Directory.kind(of: spill) == .directory)
        #expect(try String(contentsOfFile: report.damage[0].quarantineFile, encoding: .utf8) == "not a directory")
    }

    @Test func aTornTailPastTheCheckpointIsUnconfirmedAndBelowItLost() throws {
        for (durable, lost, unconfirmed): (UInt64, UInt64, UInt64) in [(10, 0, 10), (20, 10, 0)] {
            let spill = try SpillFixture()
            try spill.fill(blocks: 2)
            let name = try #require(spill.segmentFiles.first)
            #expect(truncate(spill.path(name), off_t(spill.size(of: name) - 3)) == 0)

            let report = try spill.restart(durableThrough: durable)
            #expect(report.lostRecords == lost && report.unconfirmedRecords == unconfirmed, "\(durable): \(report.damage)")
            #expect(spill.readAll().map(\.0) == Array(1 ... 10))
        }
    }

    @Test func aSealedSegmentRecordedAsVerifiedIsNotReadAgainUnlessItChanged() throws {
        let spill = try SpillFixture(segmentBytes: 1)
        try spill.fill(blocks: 4)
        let first = try spill.restart(marksAfter: 40)
        #expect(first.unreadSegments == 0 && first.sealed.count == 3, "the newest segment is never taken as sealed")

        // A flipped payload byte keeps sizes and headers: start-up trusts the record and does not
        // read the segment; the reader checks the block's checksum and passes it over.
        let names = spill.segmentFiles
        let file = try File.open(spill.path(names[0]))
        try file.write([0xEE], at: 16 + 64 + 2)
        file.close()
        let trusted = try spill.restart(marksAfter: 40, sealed: first.sealed)
        #expect(trusted.unreadSegments == 3 && trusted.damage.isEmpty, "\(trusted.damage)")
        #expect(trusted.lastSequence == 40)
        #expect(spill.readAll().map(\.0) == Array(11 ... 40))

        // A sealed segment whose size changed is read again, and its damage found.
        #expect(truncate(spill.path(names[1]), off_t(spill.size(of: names[1]) - 1)) == 0)
        let changed = try spill.restart(marksAfter: 40, sealed: first.sealed)
        #expect(changed.unreadSegments == 2 && changed.damage.map(\.kind) == [.tornTail], "\(changed.damage)")
        #expect(changed.lostRecords == 10)

        // Records past the saved checkpoint must be read for marks: only the segment wholly at or
        // below it (1 ... 10) is taken unread.
        #expect(try spill.restart(marksAfter: 15, sealed: first.sealed).unreadSegments == 1)
    }

    @Test func aSegmentCreatedButNeverWrittenIsRemovedAsEmptyNotReportedAsDamage() throws {
        let spill = try SpillFixture()
        try spill.fill(blocks: 2)
        let empty = spill.path(SegmentName.name(firstSequence: 21))
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))

        let report = try spill.restart()
        #expect(report.damage.isEmpty && report.lastSequence == 20, "\(report.damage)")
        #expect(!FileManager.default.fileExists(atPath: empty))
    }
}
