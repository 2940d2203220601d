import AllegroPosix
import AllegroWire

/// State one recovery carries from segment to segment, in sequence order.
struct ScanContext {
    let directory: String
    let marksAfter: UInt64
    /// Numbers known to have no record (skipped, or counted as lost by an earlier start): a gap
    /// they explain is no sign of damage and no new loss.
    let explained: SkippedSequences
    let decompressor = BlockDecompressor()
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
        self.explained = SkippedSequences(explained)
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

    func explainedCount(in range: ClosedRange<UInt64>) -> UInt64 { explained.count(in: range) }
}

/// One segment file read whole and checked block by block: header checksum, payload checksum,
/// sequences that follow the block before, and (for blocks recovery inflates anyway, and for a
/// block whose successor does not follow it) records that agree with the header. Damaged bytes go
/// to `quarantine/`; a header that disagrees with its records is rewritten from them; the file
/// is truncated or rewritten to hold exactly what was kept.
struct SegmentScan {
    /// A block kept, where it is in the original file, and its header (corrected from its
    /// records when `rewritten`). What the file holds afterwards follows from these alone.
    private struct Kept {
        var offset: Int
        var header: BlockHeader
        var verified: Bool
        var rewritten: Bool
        /// The last number kept before this block.
        var after: UInt64
    }

    let path: String
    let firstSequence: UInt64
    let data: UnsafeRawBufferPointer
    /// Replaces the file's first 16 bytes when they were wrong.
    private let headerRepair: [UInt8]?
    private var kept: [Kept] = []

    /// `data` is the whole file.
    init(path: String, firstSequence: UInt64, data: UnsafeRawBufferPointer, headerRepair: [UInt8]?) {
        self.path = path
        self.firstSequence = firstSequence
        self.data = data
        self.headerRepair = headerRepair
    }

    /// Checks every block, sets damage aside, and returns what the segment holds now.
    mutating func run(file: File, context: inout ScanContext, report: inout RecoveryReport,
                      eachRecordAfterMarks: (UnsafeRawBufferPointer) -> Void) throws(SystemError) -> SegmentInfo {
        var offset = SegmentHeader.size
        while offset < data.count {
            // Zeros written ahead of the blocks (SpillWriter's preallocation) that no block
            // reached: unwritten space, cut off by the write-back below, not damage.
            if Self.isZero(data, from: offset) { break }
            if var header = Self.validBlock(in: data, at: offset) {
                reconcilePrevious(before: header, context: &context, report: &report)
                if header.firstSequence > context.previousLast {
                    if header.lastSequence > context.marksAfter {
                        // Inflated anyway for marks and session counts: check its records too.
                        let payload = payloadOf(header, at: offset)
                        let marksAfter = context.marksAfter
                        guard let content = BlockContent.read(header, payload: payload, decompressor: context.decompressor, { record in
                            report.producerMarks.note(record: record)
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
        kept.append(Kept(offset: offset, header: header, verified: verified, rewritten: rewritten, after: context.previousLast))
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
                                              decompressor: context.decompressor),
              !content.agrees(with: last.header), content.firstSequence > last.after else { return }
        let fixed = content.correcting(last.header)
        report.repairs.append(Self.repair(of: last.header, content: content, path: path))
        last.rewritten = true
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

    /// Whether every byte from `offset` to the end is zero (a block header never is: it starts
    /// with the magic).
    static func isZero(_ data: UnsafeRawBufferPointer, from offset: Int) -> Bool {
        var index = offset
        while index < data.count {
            if data[index] != 0 { return false }
            index += 1
        }
        return true
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


    // MARK: Result

    /// Bytes the file holds once written back: its header, then the kept blocks.
    private var keptBytes: Int { SegmentHeader.size + kept.reduce(0) { $0 + $1.header.totalSize } }

    private func info() -> SegmentInfo {
        var info = SegmentInfo(path: path, firstSequence: firstSequence, lastSequence: firstSequence - 1, records: 0,
                               bytes: keptBytes, firstIngestNanos: 0, lastIngestNanos: 0)
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

    /// Leaves the file holding exactly its header and the kept blocks: truncated when only a
    /// tail was cut, otherwise written anew beside it and renamed over it.
    private func writeBack(file: File) throws(SystemError) {
        // In place when nothing was rewritten and the kept blocks are the file's first bytes.
        var inPlace = headerRepair == nil, expected = SegmentHeader.size
        for block in kept where inPlace {
            inPlace = !block.rewritten && block.offset == expected
            expected = block.offset + block.header.totalSize
        }
        if inPlace {
            guard keptBytes != data.count else { return }
            try file.truncate(to: keptBytes)
            try file.sync()
            return
        }
        let temporary = path + SpillRecovery.rewriteSuffix
        let out = try File.open(temporary, create: true)
        defer { out.close() }
        try out.truncate(to: 0)
        try out.write(headerRepair ?? Array(data[..<SegmentHeader.size]), at: 0)
        var at = SegmentHeader.size
        for block in kept {
            var payloadFrom = block.offset
            if block.rewritten {
                try out.write(block.header.encoded(), at: at)
                at += BlockHeader.size
                payloadFrom += BlockHeader.size
            }
            let rest = UnsafeRawBufferPointer(rebasing: data[payloadFrom ..< block.offset + block.header.totalSize])
            try out.write(rest, at: at)
            at += rest.count
        }
        try out.sync()
        try Directory.rename(temporary, to: path)
    }
}

/// `quarantine/NAME-OFFSET.bad`: where recovery keeps the bytes it set aside.
enum SpillQuarantine {
    /// Moves the entry at `path` (a file, a directory, a link) into `quarantine/` whole, as
    /// `NAME-NANOS` + `suffix` (the time keeps an earlier start's entry of the same name).
    static func move(_ path: String, directory: String, suffix: String = ".bad") throws(SystemError) -> String {
        let target = try folder(in: directory) + "/" + name(of: path) + "-\(Clock.wallNanos)" + suffix
        try Directory.rename(path, to: target)
        return target
    }

    static func save(_ bytes: UnsafeRawBufferPointer, from path: String, offset: Int, directory: String) throws(SystemError) -> String {
        let target = "\(try folder(in: directory))/\(name(of: path))-\(offset).bad"
        let file = try File.open(target, create: true)
        defer { file.close() }
        try file.truncate(to: 0)
        try file.write(bytes, at: 0)
        try file.sync()
        return target
    }

    private static func folder(in directory: String) throws(SystemError) -> String {
        let folder = directory + "/quarantine"
        try Directory.create(folder)
        return folder
    }

    private static func name(of path: String) -> String { path.split(separator: "/").last.map(String.init) ?? "segment" }
}
