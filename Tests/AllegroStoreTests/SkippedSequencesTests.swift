import AllegroSpill
import AllegroStore
import Foundation
import Testing

/// Skipped relay sequences stay disjoint and ordered whatever rows the store holds.
struct SkippedSequencesTests {
    @Test func overlappingRangesFromTwoCrashesInARowMergeIntoOne() {
        // What a relay before the fix stored after start, kill -9, start, kill -9, start.
        let skips = SkippedSequences([11 ... 2_097_152, 11 ... 1_048_576])
        #expect(skips.ranges == [11 ... 2_097_152])
        #expect(skips.upperBound == 2_097_152)
    }

    @Test func adjacentRangesMergeAndSeparateOnesStayApartInOrder() {
        var skips = SkippedSequences([40 ... 50, 11 ... 20])
        skips.insert(21 ... 30)
        #expect(skips.ranges == [11 ... 30, 40 ... 50])
        skips.insert(UInt64.max - 1 ... UInt64.max)
        skips.insert(UInt64.max ... UInt64.max)
        #expect(skips.ranges == [11 ... 30, 40 ... 50, UInt64.max - 1 ... UInt64.max])
    }

    @Test func aGapIsSplitIntoItsSkippedPartsClippedToIt() {
        let skips = SkippedSequences([11 ... 20, 31 ... 40])
        #expect(skips.parts(of: 15 ... 35) == [15 ... 20, 31 ... 35])
        #expect(skips.parts(of: 21 ... 30).isEmpty)
        #expect(skips.range(containing: 35) == 31 ... 40)
        #expect(skips.range(containing: 25) == nil)
    }

    @Test func theStoreLoadsOverlappingRowsAsDisjointRanges() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try StateStore(path: directory.appendingPathComponent("state.sqlite").path)
        try store.addSkip(11 ... 1_048_576)
        try store.addSkip(11 ... 2_097_152)
        try store.addSkip(3_000_000 ... 3_000_010)
        #expect(try store.load().skips.ranges == [11 ... 2_097_152, 3_000_000 ... 3_000_010])
    }
}
