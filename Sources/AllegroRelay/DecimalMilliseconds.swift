/// A duration written in milliseconds with at most three decimals ("1", "0.25", "0.001") and
/// held as whole microseconds, so a setting named in `_ms` can go below a millisecond without a
/// second key. Parsing is exact (no floating point), and text that is not plain digits with an
/// optional point and one to three decimals is refused, not rounded: no sign, no exponent, no
/// fourth decimal.
public enum DecimalMilliseconds {
    /// The most digits before the point: 10^9 ms is about eleven days, and its microseconds fit
    /// an `Int` with room to spare.
    static let maxWholeDigits = 9

    /// Microseconds for `text`, or nil when it is not a duration as described above.
    public static func micros(_ text: String) -> Int? {
        let parts = text.utf8.split(separator: UInt8(ascii: "."), maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, (1 ... maxWholeDigits).contains(whole.count) else { return nil }
        var fraction = parts.count == 2 ? Array(parts[1]) : []
        guard parts.count == 1 || (1 ... 3).contains(fraction.count) else { return nil }
        while fraction.count < 3 { fraction.append(UInt8(ascii: "0")) }
        var micros = 0
        for digit in Array(whole) + fraction {
            guard (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(digit) else { return nil }
            micros = micros * 10 + Int(digit - UInt8(ascii: "0"))
        }
        return micros
    }

    /// `micros` written as `micros(_:)` reads it back: "1", "0.25", "1.5", "0.001".
    public static func text(micros: Int) -> String {
        let sign = micros < 0 ? "-" : ""
        let magnitude = micros.magnitude
        let whole = magnitude / 1000, fraction = magnitude % 1000
        guard fraction != 0 else { return sign + String(whole) }
        var decimals = String(fraction)
        decimals = String(repeating: "0", count: 3 - decimals.count) + decimals
        while decimals.hasSuffix("0") { decimals.removeLast() }
        return sign + String(whole) + "." + decimals
    }
}
