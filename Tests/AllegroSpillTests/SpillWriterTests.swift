import AllegroPosix
import AllegroSpill
import Glibc
import Testing

/// The spill's writer, reader and recovery on a real temporary directory, in-process, with
/// system calls failed on purpose through `SystemFaults` (scoped to each test's directory).
@Suite(.serialized) struct SpillWriterTests {
    /// A segment file's header, before its first block (SPILL.md).
    static let segmentHeaderBytes = 16

    @Test func blocksWrittenAndSyncedAreReadBackInOrderAfterARestart() throws {
        let spill = try SpillFixture()
        for block in 0 ..< 3 { try spill.appendBlock(first: UInt64(block * 10 + 1), count: 10) }
        try spill.writer.sync()
        spill.writer.close()

        let report = try spill.restart()
        #expect(report.damage.isEmpty)
        #expect(report.lastSequence == 30)
        #expect(report.producerMarks[Array("p".utf8)]?.producerSequence == 30)
        let records = spill.readAll(from: 5)
        #expect(records.map(\.0) == Array(5 ... 30))
        #expect(records.map(\.1) == (5 ... 30).map { "p-\($0)" })
    }

    @Test func aBlockWriteThatRunsOutOfSpaceLeavesNothingBehindAndTheRetryAppendsCleanly() throws {
        let spill = try SpillFixture()
        try spill.appendBlock(first: 1, count: 10)
        let sizeBefore = try #require(spill.segmentFiles.first.map { spill.size(of: $0) })
        let fault = SystemFaults.inject(.pwrite, errno: ENOSPC, pathContaining: spill.directory)
        defer { SystemFaults.remove(fault) }
        #expect(throws: SystemError.self) { try spill.appendBlock(first: 11, count: 10) }
        #expect(SystemFaults.fired(fault) == 1)
        #expect(spill.size(of: spill.segmentFiles[0]) == sizeBefore, "the failed block was truncated away")

        try spill.appendBlock(first: 11, count: 10)
        try spill.writer.sync()
        spill.writer.close()
        let report = try spill.restart()
        #expect(report.damage.isEmpty, "the retried block follows the first with no gap or garbage")
        #expect(spill.readAll().map(\.0) == Array(1 ... 20))
    }

    @Test func aFailureToCreateASegmentIsReportedAndTheNextBlockStartsOneAfresh() throws {
        let spill = try SpillFixture()
        let fault = SystemFaults.inject(.open, errno: EMFILE, pathContaining: spill.directory)
        defer { SystemFaults.remove(fault) }
        do {
            try spill.appendBlock(first: 1, count: 5)
            Issue.record("the block should not have been written")
        } catch {
            #expect(error.errno == EMFILE && error.call.hasPrefix("open \(spill.directory)"), "\(error)")
        }
        #expect(spill.segmentFiles.isEmpty)
        try spill.appendBlock(first: 1, count: 5)
        try spill.writer.sync()
        #expect(spill.segmentFiles.count == 1)
        #expect(spill.readAll().map(\.1) == (1 ... 5).map { "p-\($0)" })
    }

    @Test func afterAFailedFsyncTheWriterNeverReportsThoseBlocksDurable() throws {
        let spill = try SpillFixture()
        try spill.appendBlock(first: 1, count: 10)
        try spill.writer.sync()
        try spill.appendBlock(first: 11, count: 10)
        let fault = SystemFaults.inject(.fdatasync, errno: EIO, pathContaining: spill.directory)
        defer { SystemFaults.remove(fault) }
        do {
            try spill.writer.sync()
            Issue.record("the fsync should have failed")
        } catch {
            #expect(error.errno == EIO && error.call.hasPrefix("fdatasync \(spill.directory)"), "\(error)")
        }
        // The fault is spent and the disk would now say yes; the writer still says no, because
        // the kernel may have dropped the pages it failed to write.
        #expect(SystemFaults.fired(fault) == 1)
        #expect(throws: SystemError.self) { try spill.writer.sync() }
        #expect(throws: SystemError.self) { try spill.writer.sync() }
        spill.writer.close()

        // A restart verifies what is really on disk: the synced block at least, whole.
        let report = try spill.restart()
        #expect(report.lastSequence >= 10)
        #expect(spill.readAll().map(\.0) == Array(1 ... report.lastSequence))
    }

    @Test func aTornLastBlockIsCutAtRestartAndTheBlocksBeforeItSurvive() throws {
        let spill = try SpillFixture()
        try spill.appendBlock(first: 1, count: 10)
        try spill.appendBlock(first: 11, count: 10)
        try spill.writer.sync()
        spill.writer.close()
        let name = try #require(spill.segmentFiles.first)
        let full = spill.size(of: name)
        #expect(truncate(spill.directory + "/" + name, off_t(full - 7)) == 0)

        let report = try spill.restart()
        #expect(report.damage.count == 1 && report.damage.first?.torn == true, "\(report.damage)")
        #expect(report.lastSequence == 10)
        #expect(spill.size(of: name) < full - 7, "the torn block is gone from the segment")
        #expect(spill.readAll().map(\.0) == Array(1 ... 10))
        try spill.appendBlock(first: 11, count: 3)
        try spill.writer.sync()
        #expect(spill.readAll().map(\.0) == Array(1 ... 13), "appending goes on after the cut")
    }

    @Test func aRecoveryRewriteThatCannotRenameFailsAndTheNextStartKeepsEveryGoodBlock() throws {
        let spill = try SpillFixture()
        for block in 0 ..< 3 { try spill.appendBlock(first: UInt64(block * 10 + 1), count: 10) }
        try spill.writer.sync()
        spill.writer.close()
        // Damage the middle block's payload: recovery must rewrite the segment without it.
        let name = try #require(spill.segmentFiles.first)
        let path = spill.directory + "/" + name
        let file = try File.open(path)
        var header = [UInt8](repeating: 0, count: BlockHeader.size)
        _ = try header.withUnsafeMutableBytes { try file.read(into: $0, at: Self.segmentHeaderBytes) }
        let first = try #require(header.withUnsafeBytes { BlockHeader.decode($0) })
        let middlePayload = Self.segmentHeaderBytes + first.totalSize + BlockHeader.size
        try file.write([0xFF, 0xFF, 0xFF, 0xFF], at: middlePayload)
        file.close()

        let fault = SystemFaults.inject(.rename, errno: EIO, pathContaining: spill.directory)
        defer { SystemFaults.remove(fault) }
        do {
            _ = try spill.restart()
            Issue.record("recovery should have reported the failed rename")
        } catch {
            #expect(error.errno == EIO && error.call.hasPrefix("rename"), "\(error)")
        }
        let report = try spill.restart()
        #expect(report.damage.count == 1 && report.damage.first?.lostRecords == 10, "\(report.damage)")
        #expect(spill.readAll().map(\.0) == Array(1 ... 10) + Array(21 ... 30))
    }
}
