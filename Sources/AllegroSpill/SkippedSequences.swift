/// Relay sequence numbers that no run ever assigned (reserved by a run that crashed before using
/// them), kept as sorted, disjoint, non-adjacent ranges. However the stored rows overlap (relays
/// before this type stored a new range from the same first number after two crashes in a row),
/// the ranges built from them never overlap or go backwards, so neither do the SKIPs made from
/// them. The same type serves as a plain set of relay numbers where one is needed (the spill's
/// numbers already counted as lost).
public struct SkippedSequences: Sendable, Equatable {
    public private(set) var ranges: [ClosedRange<UInt64>] = []

    public init(_ ranges: some Sequence<ClosedRange<UInt64>> = []) {
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) { append(range) }
    }

    /// The highest skipped number (0 when none is).
    public var upperBound: UInt64 { ranges.last?.upperBound ?? 0 }

    /// Adds `range`, merging it with the ranges it overlaps or touches.
    public mutating func insert(_ range: ClosedRange<UInt64>) {
        self = SkippedSequences(ranges + [range])
    }

    /// The range holding `sequence`, if it is skipped.
    public func range(containing sequence: UInt64) -> ClosedRange<UInt64>? {
        ranges.first { $0.contains(sequence) }
    }

    /// How many numbers of `range` are in the set.
    public func count(in range: ClosedRange<UInt64>) -> UInt64 {
        parts(of: range).reduce(0) { $0 + ($1.upperBound - $1.lowerBound + 1) }
    }

    /// The skipped parts of `gap`, in order, each clipped to it.
    public func parts(of gap: ClosedRange<UInt64>) -> [ClosedRange<UInt64>] {
        ranges.compactMap { range in
            guard range.overlaps(gap) else { return nil }
            return max(range.lowerBound, gap.lowerBound) ... min(range.upperBound, gap.upperBound)
        }
    }

    /// Appends a range that starts at or after the last one's start.
    private mutating func append(_ range: ClosedRange<UInt64>) {
        guard let last = ranges.last else { return ranges.append(range) }
        if last.upperBound == .max || range.lowerBound <= last.upperBound + 1 {
            ranges[ranges.count - 1] = last.lowerBound ... max(last.upperBound, range.upperBound)
        } else {
            ranges.append(range)
        }
    }
}
