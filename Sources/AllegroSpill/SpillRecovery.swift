import AllegroPosix
import AllegroWire

/// Start-up scan of the spill directory. It never refuses to start over what it finds there:
/// - `spill/` that is not a directory is renamed aside and made anew;
/// - a segment name that is not a regular file (a directory, a dangling link) is moved to
///   `quarantine/`; so is a file with no readable header and no readable first block, and a
///   second file with the same first number;
/// - a segment whose name disagrees with its header is renamed to its header's number, and a
///   damaged segment header is rewritten from the first block;
/// - every block is verified (`SegmentScan`); damaged bytes go to `quarantine/`;
/// - empty segments are deleted;
/// - every number with no record left, that no skip explains, is counted (`RecoveryReport`).
/// Only a failing system call (the data directory cannot be read or written) stops it.
public enum SpillRecovery {
    /// A segment being rewritten; a leftover is removed (the segment itself is intact).
    static let rewriteSuffix = ".rewrite"
    /// A segment between its two renames; a leftover is a segment like any other.
    static let renamingSuffix = ".renaming"

    private struct Candidate {
        var name: String
        var path: String
        var directory: String
        /// The first number its own header (or, that being damaged, its first block) gives.
        var firstSequence: UInt64
        var headerIsDamaged: Bool
    }

    /// `marksAfter`: producer marks are read from blocks past it, and `eachRecordAfterMarks` sees
    /// every record above it (in DELIVER layout, size checked). `durableThrough`: the last number
    /// known fsync'd (the saved checkpoint), which divides lost from unconfirmed. `explained`:
    /// numbers known to have no record (skipped, or counted by an earlier start), in any order.
    /// `sealed`: segments recorded as sealed and verified, by file name (`RecoveryReport.sealed`
    /// of the last start, and segments sealed since): one that still matches is not read again.
    public static func run(directory: String, marksAfter: UInt64, durableThrough: UInt64 = 0, explained: [ClosedRange<UInt64>] = [],
                           sealed: [String: SegmentInfo] = [:],
                           eachRecordAfterMarks: (UnsafeRawBufferPointer) -> Void = { _ in }) throws(SystemError) -> RecoveryReport {
        var report = RecoveryReport()
        try prepare(directory, report: &report)
        var context = ScanContext(directory: directory, marksAfter: marksAfter, explained: explained)
        var candidates: [Candidate] = []
        for name in try Directory.entries(directory).sorted() {
            let path = directory + "/" + name
            if name.hasSuffix(rewriteSuffix) {
                try Directory.remove(path)
                continue
            }
            let plain = name.hasSuffix(renamingSuffix) ? String(name.dropLast(renamingSuffix.count)) : name
            guard let named = SegmentName.firstSequence(of: plain) else { continue }
            guard try Directory.kind(of: path) == .regularFile else {
                let target = try SpillQuarantine.move(path, directory: directory, suffix: ".entry")
                report.damage.append(.init(kind: .wrongType, segment: path, offset: 0, length: 0, lostRecords: 0,
                                           unconfirmedRecords: 0, quarantineFile: target, position: named))
                continue
            }
            if let candidate = try identify(name: name, path: path, named: named, directory: directory, report: &report) {
                candidates.append(candidate)
            }
        }
        candidates.sort { ($0.firstSequence, $0.name) < ($1.firstSequence, $1.name) }

        var renames: [(from: String, to: String)] = []
        var previousFirst: UInt64?
        for (index, candidate) in candidates.enumerated() {
            defer { previousFirst = candidate.firstSequence }
            if candidate.firstSequence == previousFirst {
                try setAsideWhole(candidate.path, kind: .duplicateSegment, position: candidate.firstSequence,
                                  directory: directory, report: &report)
                continue
            }
            if index < candidates.count - 1, let mark = sealed[candidate.name],
               try stillMatches(mark, candidate, marksAfter: marksAfter, after: context.previousLast) {
                // Sealed, verified when it was written or at an earlier start, and unchanged.
                var segment = mark
                segment.path = candidate.path
                context.keepUnread(segment)
                report.segments.append(segment)
                report.unreadSegments += 1
                continue
            }
            guard var segment = try scan(candidate, context: &context, report: &report, eachRecordAfterMarks) else {
                try Directory.remove(candidate.path)
                continue
            }
            let proper = directory + "/" + SegmentName.name(firstSequence: candidate.firstSequence)
            if candidate.path != proper { renames.append((candidate.path, proper)) }
            segment.path = proper
            report.segments.append(segment)
        }
        try rename(renames, report: &report)
        report.sealed = Array(report.segments.dropLast())
        try Directory.sync(directory)
        // Numbers below a block that survived were written before it: count a gap there as lost.
        account(&report, context: context, durableThrough: max(durableThrough, context.previousLast))
        return report
    }

    /// The highest producer sequence (and its relay sequence) per producer in every block of
    /// `segments` that reads back whole: a read-only pass (damage is passed over and left for
    /// replays to report), for marks that must be rebuilt after recovery cut the spill.
    public static func producerMarks(in segments: [SegmentInfo]) -> ProducerMarks {
        var marks = ProducerMarks()
        let reader = SpillReader(catalog: SegmentCatalog(segments), from: 1)
        while reader.nextBlock(limit: .max, { records, _ in
            for record in DeliveredRecords(records) { marks.note(record: record) }
        }) {}
        return marks
    }

    /// Whether a sealed segment's record still describes the file: same size, same header, its
    /// last block where it was and verifying, records contiguous, all at or below `marksAfter`
    /// (their marks and session counts are saved) and after what was kept before it. Damage
    /// inside it that keeps all of that (a flipped payload bit) is found when a replay reads the
    /// block, whose checksum is checked on every read.
    private static func stillMatches(_ mark: SegmentInfo, _ candidate: Candidate, marksAfter: UInt64,
                                     after previousLast: UInt64) throws(SystemError) -> Bool {
        guard !candidate.headerIsDamaged, mark.firstSequence == candidate.firstSequence, !mark.isEmpty,
              mark.lastSequence - mark.firstSequence + 1 == mark.records, mark.lastSequence <= marksAfter,
              mark.firstSequence > previousLast, mark.lastBlockOffset >= SegmentHeader.size,
              candidate.path == candidate.directory + "/" + SegmentName.name(firstSequence: candidate.firstSequence) else { return false }
        let file = try File.open(candidate.path, readOnly: true)
        defer { file.close() }
        guard try file.size() == mark.bytes else { return false }
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: BlockHeader.size, alignment: 16)
        defer { bytes.deallocate() }
        guard try file.read(into: bytes, at: mark.lastBlockOffset) == BlockHeader.size,
              let last = BlockHeader.decode(UnsafeRawBufferPointer(bytes)) else { return false }
        return last.lastSequence == mark.lastSequence && mark.lastBlockOffset + last.totalSize == mark.bytes
    }

    /// Makes sure `spill/` is a directory; anything else there is renamed aside.
    private static func prepare(_ directory: String, report: inout RecoveryReport) throws(SystemError) {
        switch try Directory.kind(of: directory) {
        case nil:
            try Directory.create(directory)
            return
        case .directory?:
            return
        case .symbolicLink?:
            // A link to a directory (the spill on another disk) is fine; any other is not.
            if (try? Directory.entries(directory)) != nil { return }
        case .regularFile?, .other?:
            break
        }
        let target = directory + ".bad-" + String(Clock.wallNanos)
        try Directory.rename(directory, to: target)
        try Directory.create(directory)
        report.damage.append(.init(kind: .wrongType, segment: directory, offset: 0, length: 0, lostRecords: 0,
                                   unconfirmedRecords: 0, quarantineFile: target, position: .max))
    }

    /// Reads a segment's header (or its first block's) to learn its first number; a file with
    /// neither is moved to quarantine whole.
    private static func identify(name: String, path: String, named: UInt64, directory: String,
                                 report: inout RecoveryReport) throws(SystemError) -> Candidate? {
        let file = try File.open(path, readOnly: true)
        defer { file.close() }
        if try file.size() == 0 {
            // Created, then a crash before its header was written: an empty segment.
            try Directory.remove(path)
            return nil
        }
        let head = UnsafeMutableRawBufferPointer.allocate(byteCount: SegmentHeader.size + BlockHeader.size, alignment: 16)
        defer { head.deallocate() }
        let read = try file.read(into: head, at: 0)
        let bytes = UnsafeRawBufferPointer(rebasing: head[..<read])
        var found: (UInt64, Bool)?
        if let first = SegmentHeader.firstSequence(bytes) {
            found = (first, false)
        } else if let block = SegmentScan.header(in: bytes, at: SegmentHeader.size) {
            found = (block.firstSequence, true)
        }
        guard let (first, damaged) = found else {
            try setAsideWhole(path, kind: .unreadableSegment, position: named, directory: directory, report: &report)
            return nil
        }
        return Candidate(name: name, path: path, directory: directory, firstSequence: first, headerIsDamaged: damaged)
    }

    /// Scans one segment; nil when nothing in it was kept.
    private static func scan(_ candidate: Candidate, context: inout ScanContext, report: inout RecoveryReport,
                             _ eachRecordAfterMarks: (UnsafeRawBufferPointer) -> Void) throws(SystemError) -> SegmentInfo? {
        let file = try File.open(candidate.path)
        defer { file.close() }
        let size = try file.size()
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
        defer { bytes.deallocate() }
        let read = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: bytes[..<size]), at: 0)
        let data = UnsafeRawBufferPointer(rebasing: bytes[..<read])
        var repairedHeader: [UInt8]?
        if candidate.headerIsDamaged {
            repairedHeader = SegmentHeader.encode(firstSequence: candidate.firstSequence)
            report.repairs.append(.init(kind: .segmentHeader,
                                        detail: "\(candidate.path): header rewritten from its first block (\(candidate.firstSequence))"))
        }
        var segment = SegmentScan(path: candidate.path, firstSequence: candidate.firstSequence, data: data,
                                  headerRepair: repairedHeader)
        let info = try segment.run(file: file, context: &context, report: &report, eachRecordAfterMarks: eachRecordAfterMarks)
        return info.isEmpty ? nil : info
    }

    /// Moves a whole file into `quarantine/` (a rename: nothing is copied).
    private static func setAsideWhole(_ path: String, kind: RecoveryReport.Damage.Kind, position: UInt64, directory: String,
                                      report: inout RecoveryReport) throws(SystemError) {
        let size = try File.open(path, readOnly: true).size()
        let target = try SpillQuarantine.move(path, directory: directory)
        report.damage.append(.init(kind: kind, segment: path, offset: 0, length: size, lostRecords: 0, unconfirmedRecords: 0,
                                   quarantineFile: target, position: position))
    }

    /// Renames segments to their header's number, through a temporary name so that two
    /// swapped names never collide.
    private static func rename(_ renames: [(from: String, to: String)], report: inout RecoveryReport) throws(SystemError) {
        var staged: [(from: String, through: String, to: String)] = []
        for (from, to) in renames {
            let through = from.hasSuffix(renamingSuffix) ? from : from + renamingSuffix
            if through != from { try Directory.rename(from, to: through) }
            staged.append((from, through, to))
        }
        for (from, through, to) in staged {
            try Directory.rename(through, to: to)
            report.repairs.append(.init(kind: .renamedSegment, detail: "\(from) -> \(to)"))
        }
    }

    private static func width(_ range: ClosedRange<UInt64>) -> UInt64 { range.upperBound - range.lowerBound + 1 }

    /// Counts every number between kept blocks (and after the last, up to what was known
    /// written) that no record and no skip accounts for, on the damage that left the gap.
    private static func account(_ report: inout RecoveryReport, context: ScanContext, durableThrough: UInt64) {
        var gaps = context.gaps
        let positions = report.damage.map(\.position).filter { $0 != .max }
        if let firstKept = context.firstKept, let earliest = positions.min(), earliest < firstKept {
            gaps.insert(earliest ... firstKept - 1, at: 0)
        }
        let tailStart = context.firstKept == nil ? positions.min() : context.previousLast + 1
        let tailEnd = max(durableThrough, context.tornClaimedThrough)
        if let tailStart, tailEnd >= tailStart { gaps.append(tailStart ... tailEnd) }

        for gap in gaps {
            let confirmed = gap.lowerBound <= durableThrough ? gap.lowerBound ... min(gap.upperBound, durableThrough) : nil
            let confirmedCount = confirmed.map { width($0) - context.explainedCount(in: $0) } ?? 0
            let unconfirmedCount = width(gap) - context.explainedCount(in: gap) - confirmedCount
            guard confirmedCount + unconfirmedCount > 0 else { continue }
            report.countedGaps.append(gap)
            if let index = report.damage.firstIndex(where: { gap.contains($0.position) }) {
                report.damage[index].lostRecords += confirmedCount
                report.damage[index].unconfirmedRecords += unconfirmedCount
            } else {
                report.damage.append(.init(kind: .missing, segment: "\(gap.lowerBound) ... \(gap.upperBound)", offset: 0, length: 0,
                                           lostRecords: confirmedCount, unconfirmedRecords: unconfirmedCount,
                                           quarantineFile: "", position: gap.lowerBound))
            }
        }
    }
}
