/// A configured token, compared in constant time: the time taken depends only on the lengths,
/// never on where the first differing byte is.
public struct Token: Sendable {
    private let bytes: [UInt8]

    public init(_ text: String) { bytes = Array(text.utf8) }

    public func matches(_ offered: UnsafeRawBufferPointer) -> Bool {
        var difference = UInt8(truncatingIfNeeded: bytes.count ^ offered.count)
        let n = max(bytes.count, offered.count)
        for index in 0 ..< n {
            let expected = index < bytes.count ? bytes[index] : 0
            let given = index < offered.count ? offered[index] : 0
            difference |= expected ^ given
        }
        return difference == 0 && bytes.count == offered.count
    }
}
