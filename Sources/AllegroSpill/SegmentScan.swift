import AllegroPosix
import AllegroWire

/// State one recovery carries from segment to segment, in sequence order.
struct ScanContext {
    let directory: String
    let marksAfter: UInt64
    /// Numbers known to have no record (skipped, or counted as lost by an earlier start),
    /// sorted and merged: a gap they explain is no sign of damage and no new loss.
    let explained: [ClosedRange<UInt64>]
    let inflater = Inflater()
    /// The last relay sequence of the last block kept so far.
    var previousLast: UInt64 = 0
    /// Gaps between consecutive kept blocks, in order.
    var gaps: [ClosedRange<UInt64>] = []
    var firstKept: UInt64?
    /// The highest last sequence a torn block's (intact) header claimed.
    var tornClaimedThrough: UInt64 = 0

    init(directory: String, marksAfter: UInt64, explained: [ClosedRange<UInt64>]) {
        self.directory = directory
        self.marksAfter = marksAfter
        var merged: [ClosedRange<UInt64>] = []
        for range in explained.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, range.lowerBound <= last.upperBound &+ 1, last.upperBound != .max {
                merged[merged.count - 1] = last.lowerBound ... max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        self.explained = merged
    }

    /// Takes a segment start-up did not read (a sealed one recorded as verified) as kept.
    mutating func keepUnread(_ segment: SegmentInfo) {
        if firstKept == nil {
            firstKept = segment.firstSequence
        } else if segment.firstSequence > previousLast + 1 {
            gaps.append(previousLast + 1 ... segment.firstSequence - 1)
        }
        previousLast = segment.lastSequence
    }

    func explainedCount(in range: ClosedRange<UInt64>) -> UInt64 {
        explained.reduce(0) { total, known in
            let low = max(known.lowerBound, range.lowerBound), high = min(known.upperBound, range.upperBound)
            return low <= high ? total + (high - low + 1) : total
        }
    }
}

/// One segment file read whole and checked block by block: header checksum, payload checksum,
/// sequences that follow the block before, and (for blocks recovery inflates anyway, and for a
/// block whose successor does not follow it) records that agree with the header. Damaged bytes go
/// to `quarantine/`; a header that disagrees with its records is rewritten from them; the file
/// is truncated or rewritten to hold exactly what was kept.
struct SegmentScan {
    /// A part of the rewritten segment: bytes of the original file, or bytes recovery made.
    private enum Piece {
        case original(Range<Int>)
        case replaced([UInt8])

        var count: Int {
            switch self {
            case let .original(range): range.count
            case let .replaced(bytes): bytes.count
            }
        }
    }

    private struct Kept {
        var offset: Int
        var header: BlockHeader
        var verified: Bool
        /// The last number kept before this block.
        var after: UInt64
    }

    let path: String
    let firstSequence: UInt64
    let data: UnsafeRawBufferPointer
    private var pieces: [Piece] = []
    private var kept: [Kept] = []

    /// `data` is the whole file; `headerRepair` replaces its first 16 bytes when they were wrong.
    init(path: String, firstSequence: UInt64, data: UnsafeRawBufferPointer, headerRepair: [UInt8]?) {
        self.path = path
        self.firstSequence = firstSequence
        self.data = data
        pieces = [headerRepair.map { .replaced($0) } ?? .original(0 ..< SegmentHeader.size)]
    }

    /// Checks every block, sets damage aside, and returns what the segment holds now.
    mutating func run(file: File, context: inout ScanContext, report: inout RecoveryReport,
                      eachRecordAfterMarks: (UnsafeRawBufferPointer) -> Void) throws(SystemError) -> SegmentInfo {
        var offset = SegmentHeader.size
        while offset < data.count {
            if var header = Self.validBlock(in: data, at: offset) {
                reconcilePrevious(before: header, context: &context, report: &report)
                if header.firstSequence > context.previousLast {
                    if header.lastSequence > context.marksAfter {
                        // Inflated anyway for marks and session counts: check its records too.
                        let payload = payloadOf(header, at: offset)
                        let marksAfter = context.marksAfter
                        guard let content = BlockContent.read(header, payload: payload, inflater: context.inflater, { record in
                            Self.noteMark(record, into: &report)
                            if let base = record.baseAddress, DeliveredRecordLayout.relaySequence(at: base) > marksAfter {
                                eachRecordAfterMarks(record)
                            }
                        }) else {
                            offset = try setAside(from: offset, context: &context, report: &report)
                            continue
                        }
                        var rewritten = false
                        if !content.agrees(with: header), content.firstSequence > context.previousLast {
                            report.repairs.append(Self.repair(of: header, content: content, path: path))
                            header = content.correcting(header)
                            rewritten = true
                        }
                        keep(header, at: offset, verified: true, rewritten: rewritten, context: &context)
                    } else {
                        keep(header, at: offset, verified: false, rewritten: false, context: &context)
                    }
                    offset += header.totalSize
                    continue
                }
            }
            offset = try setAside(from: offset, context: &context, report: &report)
        }
        try writeBack(file: file)
        return info()
    }

    // MARK: Blocks

    private func payloadOf(_ header: BlockHeader, at offset: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: data[offset + BlockHeader.size ..< offset + header.totalSize])
    }

    /// Keeps the block at `offset`; `rewritten` when `header` was corrected from its records.
    private mutating func keep(_ header: BlockHeader, at offset: Int, verified: Bool, rewritten: Bool, context: inout ScanContext) {
        if context.firstKept == nil {
            context.firstKept = header.firstSequence
        } else if header.firstSequence > context.previousLast + 1 {
            context.gaps.append(context.previousLast + 1 ... header.firstSequence - 1)
        }
        if rewritten {
            pieces.append(.replaced(header.encoded()))
            pieces.append(.original(offset + BlockHeader.size ..< offset + header.totalSize))
        } else {
            pieces.append(.original(offset ..< offset + header.totalSize))
        }
        kept.append(Kept(offset: offset, header: header, verified: verified, after: context.previousLast))
        context.previousLast = header.lastSequence
    }

    private static func repair(of header: BlockHeader, content: BlockContent, path: String) -> RecoveryReport.Repair {
        .init(kind: .blockHeader, detail: "\(path): header said \(header.firstSequence) ... \(header.lastSequence), "
            + "its records are \(content.firstSequence) ... \(content.lastSequence)")
    }

    /// The block before `next` in this segment claims numbers `next` also has, or stops short
    /// of it with a gap no skip explains: one of the two headers is wrong. If the earlier block
    /// was not read yet, its records decide (and correct its header).
    private mutating func reconcilePrevious(before next: BlockHeader, context: inout ScanContext, report: inout RecoveryReport) {
        guard var last = kept.last, !last.verified else { return }
        let follows = next.firstSequence == context.previousLast + 1
        let gapExplained = next.firstSequence > context.previousLast + 1
            && context.explainedCount(in: context.previousLast + 1 ... next.firstSequence - 1) == next.firstSequence - context.previousLast - 1
        guard !follows, !gapExplained else { return }
        last.verified = true
        defer { kept[kept.count - 1] = last }
        guard let content = BlockContent.read(last.header, payload: payloadOf(last.header, at: last.offset),
                                              inflater: context.inflater),
              !content.agrees(with: last.header), content.firstSequence > last.after else { return }
        // Only a kept block's bytes follow it in `pieces`: it is the last piece (or, already
        // rewritten, the last two). Replace its header.
        let fixed = content.correcting(last.header)
        report.repairs.append(Self.repair(of: last.header, content: content, path: path))
        let payload = last.offset + BlockHeader.size ..< last.offset + last.header.totalSize
        if pieces.count >= 2, case .replaced = pieces[pieces.count - 2], case let .original(range) = pieces[pieces.count - 1],
           range == payload {
            pieces.removeLast(2)
        } else {
            assert({ if case let .original(range) = pieces.last { range.lowerBound == last.offset } else { false } }())
            pieces.removeLast()
        }
        pieces.append(.replaced(fixed.encoded()))
        pieces.append(.original(payload))
        if context.firstKept == last.header.firstSequence { context.firstKept = fixed.firstSequence }
        if let gap = context.gaps.last, gap.upperBound == last.header.firstSequence - 1 {
            // The gap before it is measured again against its true first number.
            context.gaps.removeLast()
            if fixed.firstSequence > gap.lowerBound { context.gaps.append(gap.lowerBound ... fixed.firstSequence - 1) }
        }
        last.header = fixed
        context.previousLast = fixed.lastSequence
    }

    // MARK: Damage

    /// Moves the bytes from `offset` to the next block that verifies and follows (or to the end)
    /// into `quarantine/`; returns where scanning goes on.
    private mutating func setAside(from offset: Int, context: inout ScanContext, report: inout RecoveryReport) throws(SystemError) -> Int {
        var next = offset + 1
        var following: BlockHeader?
        while next + BlockHeader.size <= data.count {
            if let header = Self.validBlock(in: data, at: next), header.firstSequence > context.previousLast {
                following = header
                break
            }
            next += 1
        }
        let end = following == nil ? data.count : next
        let damaged = UnsafeRawBufferPointer(rebasing: data[offset ..< end])
        if following == nil, let claimed = Self.header(in: data, at: offset), claimed.firstSequence > context.previousLast {
            // A block cut short: its intact header says which numbers it was to hold.
            context.tornClaimedThrough = max(context.tornClaimedThrough, claimed.lastSequence)
        }
        let target = try SpillQuarantine.save(damaged, from: path, offset: offset, directory: context.directory)
        report.damage.append(.init(kind: following == nil ? .tornTail : .damagedBlock, segment: path, offset: offset,
                                   length: end - offset, lostRecords: 0, unconfirmedRecords: 0, quarantineFile: target,
                                   position: context.previousLast + 1))
        return end
    }

    /// The 64-byte header at `offset`, if it verifies on its own (its payload may be missing).
    static func header(in data: UnsafeRawBufferPointer, at offset: Int) -> BlockHeader? {
        guard offset >= 0, offset + BlockHeader.size <= data.count else { return nil }
        return BlockHeader.decode(UnsafeRawBufferPointer(rebasing: data[offset ..< offset + BlockHeader.size]))
    }

    /// A block at `offset` whose header and payload both verify.
    static func validBlock(in data: UnsafeRawBufferPointer, at offset: Int) -> BlockHeader? {
        guard let header = header(in: data, at: offset), offset + header.totalSize <= data.count else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: data[offset + BlockHeader.size ..< offset + header.totalSize])
        return CRC32.of(payload) == header.payloadChecksum ? header : nil
    }

    static func noteMark(_ record: UnsafeRawBufferPointer, into report: inout RecoveryReport) {
        guard let base = record.baseAddress else { return }
        let producer = Array(DeliveredRecordLayout.producer(of: record))
        let producerSequence = DeliveredRecordLayout.producerSequence(at: base)
        if let known = report.producerMarks[producer], known.producerSequence >= producerSequence { return }
        report.producerMarks[producer] = (producerSequence, DeliveredRecordLayout.relaySequence(at: base))
    }

    // MARK: Result

    private func info() -> SegmentInfo {
        var info = SegmentInfo(path: path, firstSequence: firstSequence, lastSequence: firstSequence - 1, records: 0,
                               bytes: pieces.reduce(0) { $0 + $1.count }, firstIngestNanos: 0, lastIngestNanos: 0)
        for block in kept {
            if info.isEmpty { info.firstIngestNanos = block.header.firstIngestNanos }
            info.records += UInt64(block.header.recordCount)
            info.lastSequence = block.header.lastSequence
            info.lastIngestNanos = block.header.lastIngestNanos
        }
        // The last kept block is the last thing in the file as written back.
        if let last = kept.last { info.lastBlockOffset = info.bytes - last.header.totalSize }
        return info
    }

    /// Leaves the file holding exactly the kept pieces: truncated when only a tail was cut,
    /// otherwise written anew beside it and renamed over it.
    private func writeBack(file: File) throws(SystemError) {
        let original = pieces.allSatisfy { if case .original = $0 { true } else { false } }
        var contiguous = original
        var expected = 0
        for case let .original(range) in pieces where contiguous {
            contiguous = range.lowerBound == expected
            expected = range.upperBound
        }
        let total = pieces.reduce(0) { $0 + $1.count }
        if contiguous {
            guard total != data.count else { return }
            try file.truncate(to: total)
            try file.sync()
            return
        }
        let temporary = path + SpillRecovery.rewriteSuffix
        let out = try File.open(temporary, create: true)
        defer { out.close() }
        try out.truncate(to: 0)
        var at = 0
        for piece in pieces {
            switch piece {
            case let .original(range): try out.write(UnsafeRawBufferPointer(rebasing: data[range]), at: at)
            case let .replaced(bytes): try out.write(bytes, at: at)
            }
            at += piece.count
        }
        try out.sync()
        try Directory.rename(temporary, to: path)
    }
}

/// `quarantine/NAME-OFFSET.bad`: where recovery keeps the bytes it set aside.
enum SpillQuarantine {
    static func save(_ bytes: UnsafeRawBufferPointer, from path: String, offset: Int, directory: String) throws(SystemError) -> String {
        let folder = directory + "/quarantine"
        try Directory.create(folder)
        let name = path.split(separator: "/").last.map(String.init) ?? "segment"
        let target = "\(folder)/\(name)-\(offset).bad"
        let file = try File.open(target, create: true)
        defer { file.close() }
        try file.truncate(to: 0)
        try file.write(bytes, at: 0)
        try file.sync()
        return target
    }
}
