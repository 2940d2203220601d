@testable import AllegroSpill
import Testing

/// When the spill loop fsyncs what it has written (`SpillLoop.fsyncIsDue`), without a thread or
/// a disk: sequences and elapsed times stated case by case.
@Suite struct GroupCommitRuleTests {
    private let burst: UInt64 = 5_000_000

    @Test func aLoopThatCaughtUpWithTheRingFsyncs() {
        #expect(SpillLoop.fsyncIsDue(next: 11, ringHead: 11, cycleHead: 11, cycleIsBurst: false, sinceSyncEndNanos: 0, burstNanos: burst))
        #expect(SpillLoop.fsyncIsDue(next: 11, ringHead: 11, cycleHead: 9, cycleIsBurst: true, sinceSyncEndNanos: 0, burstNanos: burst))
    }

    @Test func aTrickleFsyncsItsBlockWithoutChasingRecordsThatArrivedDuringTheWrite() {
        // The cycle began with records up to 10 waiting (head 11) and its block took them all;
        // record 11 arrived during the write and waits for the next cycle.
        #expect(SpillLoop.fsyncIsDue(next: 11, ringHead: 12, cycleHead: 11, cycleIsBurst: false, sinceSyncEndNanos: 0, burstNanos: burst))
    }

    @Test func aBurstWritesOnUntilItCatchesUpOrItsTimeIsUp() {
        // A burst's later blocks also take everything waiting when they began; it goes on.
        #expect(!SpillLoop.fsyncIsDue(next: 11, ringHead: 12, cycleHead: 11, cycleIsBurst: true, sinceSyncEndNanos: 0, burstNanos: burst))
        #expect(!SpillLoop.fsyncIsDue(next: 11, ringHead: 500, cycleHead: 400, cycleIsBurst: true,
                                      sinceSyncEndNanos: burst - 1, burstNanos: burst))
        #expect(SpillLoop.fsyncIsDue(next: 11, ringHead: 500, cycleHead: 400, cycleIsBurst: true,
                                     sinceSyncEndNanos: burst, burstNanos: burst))
    }

    @Test func aTrickleBlockThatCouldNotTakeEverythingWaitsForTheRest() {
        // Not a burst by its first block, yet this block stopped short of the cycle's head
        // (the records waiting outgrew a block since): no fsync until it catches up.
        #expect(!SpillLoop.fsyncIsDue(next: 11, ringHead: 30, cycleHead: 20, cycleIsBurst: false, sinceSyncEndNanos: 0, burstNanos: burst))
    }
}
