@testable import AllegroGitea
import Foundation
import Testing

/// RFC 3339 times read and written by hand, checked against Foundation's formatter.
@Suite struct RFC3339Tests {
    @Test func timesReadAsFoundationReadsThem() throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var generator = SystemRandomNumberGenerator()
        for _ in 0 ..< 2_000 {
            let seconds = Int64.random(in: -2_000_000_000 ... 7_000_000_000, using: &generator)
            let text = formatter.string(from: Date(timeIntervalSince1970: Double(seconds)))
            #expect(RFC3339.millis(text) == seconds * 1000, "\(text)")
            #expect(RFC3339.string(millis: seconds * 1000) == text)
        }
    }

    @Test func offsetsFractionsAndLeapDaysAreRead() {
        #expect(RFC3339.millis("1970-01-01T00:00:00Z") == 0)
        #expect(RFC3339.millis("2026-12-03T11:05:00.25+01:00") == RFC3339.millis("2026-12-03T10:05:00Z").map { $0 + 250 })
        #expect(RFC3339.millis("2026-12-03T10:05:00.123456789Z") == RFC3339.millis("2026-12-03T10:05:00Z").map { $0 + 123 })
        #expect(RFC3339.millis("2026-12-03t05:05:00-05:00") == RFC3339.millis("2026-12-03T10:05:00Z"))
        #expect(RFC3339.millis("2024-02-29T00:00:00Z") != nil)
        #expect(RFC3339.millis("2016-12-31T23:59:60Z") == RFC3339.millis("2016-12-31T23:59:59Z").map { $0 + 999 })
        #expect(RFC3339.string(millis: 1_999) == "1970-01-01T00:00:01Z")
        #expect(RFC3339.string(millis: -1) == "1969-12-31T23:59:59Z")
    }

    @Test func anythingElseIsRefusedWithoutATrap() {
        for bad in ["", "2026-12-03", "2026-12-03T10:05:00", "2026-13-03T10:05:00Z", "2026-02-29T10:05:00Z", "2026-12-32T10:05:00Z",
                    "2026-12-03T24:00:00Z", "2026-12-03T10:60:00Z", "2026-12-03T10:05:61Z", "2026-12-03T10:05:00.Z",
                    "2026-12-03T10:05:00+24:00", "2026-12-03T10:05:00+01", "2026-12-03T10:05:00Zx", "2026-12-03X10:05:00Z",
                    "２０２６-12-03T10:05:00Z", "2026-12-03T10:05:00.12345678901234567890Z", "-026-12-03T10:05:00Z"] {
            #expect(RFC3339.millis(bad) == nil, "\(bad)")
        }
    }
}
