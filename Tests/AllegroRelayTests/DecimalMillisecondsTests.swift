@testable import AllegroRelay
import Testing

/// Milliseconds with up to three decimals, as `spill_fsync_interval_ms` takes them: exact, and
/// refused rather than rounded when they are anything else.
struct DecimalMillisecondsTests {
    @Test(arguments: [("0", 0), ("1", 1_000), ("0.25", 250), ("0.5", 500), ("0.001", 1), ("1.5", 1_500),
                      ("10000", 10_000_000), ("007", 7_000), ("2.050", 2_050), ("999999999.999", 999_999_999_999)])
    func wholeNumbersAndUpToThreeDecimalsAreReadExactly(text: String, micros: Int) {
        #expect(DecimalMilliseconds.micros(text) == micros)
    }

    @Test(arguments: ["", ".", ".5", "1.", "0.0001", "-1", "+1", "1e3", " 1", "1 ", "0x10", "1.2.3", "1,5", "abc",
                      "1000000000", "١"])
    func anythingElseIsRefusedNotRounded(text: String) {
        #expect(DecimalMilliseconds.micros(text) == nil, "\(text)")
    }

    @Test(arguments: [(0, "0"), (1_000, "1"), (250, "0.25"), (1, "0.001"), (1_500, "1.5"), (10_000_000, "10000"),
                      (-250, "-0.25")])
    func microsAreWrittenInTheShortestFormThatReadsBack(micros: Int, text: String) {
        #expect(DecimalMilliseconds.text(micros: micros) == text)
        if micros >= 0 { #expect(DecimalMilliseconds.micros(text) == micros) }
    }

    @Test func aSubMillisecondIntervalReachesTheSpillInMicrosecondsAndTenSecondsIsTheMost() throws {
        var configuration = RelayConfiguration()
        configuration.spillFsyncIntervalMicros = 250
        try configuration.validate()
        #expect(configuration.spillSettings.fsyncIntervalMicros == 250)
        configuration.spillFsyncIntervalMicros = 10_000_001
        #expect(throws: RelayConfiguration.Invalid(key: "spill_fsync_interval_ms", value: "10000.001",
                                                   allowed: "0 ... 10000 (up to three decimals: 0.25 is 250 µs)")) {
            try configuration.validate()
        }
    }
}
