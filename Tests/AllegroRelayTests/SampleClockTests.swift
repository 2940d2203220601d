@testable import AllegroRelay
import Testing

/// The lag histograms' sampling: at most one observation per interval, and a clock that steps
/// back does not silence them.
struct SampleClockTests {
    /// Which of `times` the clock lets through, in order.
    private func taken(_ times: [UInt64]) -> [Bool] {
        var clock = SampleClock(intervalNanos: 1_000_000)
        return times.map { clock.take(at: $0) }
    }

    @Test func observesAtMostOncePerIntervalAndAgainOnceItIsUp() {
        #expect(taken([5_000_000, 5_000_001, 5_999_999, 6_000_000, 6_500_000]) == [true, false, false, true, false])
    }

    @Test func aWallClockSteppedBackFurtherThanTheIntervalStartsItAgain() {
        // Half an interval back still waits; far back (an hour, say) would otherwise silence it.
        #expect(taken([50_000_000, 49_500_000, 10_000_000, 10_100_000]) == [true, false, true, false])
    }
}
