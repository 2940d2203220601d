import AllegroPosix
import AllegroWire

/// What recovery found and did, for the log and the events table.
public struct RecoveryReport: Sendable {
    /// One damaged byte range moved out of a segment.
    public struct Damage: Sendable, Equatable {
        public var segment: String
        public var offset: Int
        public var length: Int
        /// Records that were in the range (from the sequence gap it leaves), 0 for a torn tail.
        public var lostRecords: UInt64
        public var quarantineFile: String
        public var torn: Bool
    }

    public var segments: [SegmentInfo] = []
    public var damage: [Damage] = []
    /// Highest producer sequence (and its relay sequence) per producer id, from the blocks
    /// recovery was asked to read.
    public var producerMarks: [[UInt8]: (producerSequence: UInt64, relaySequence: UInt64)] = [:]

    public var lastSequence: UInt64 { segments.last { !$0.isEmpty }?.lastSequence ?? 0 }
}

/// Start-up scan of the spill directory: verifies every block of every segment, truncates a torn
/// tail, moves damaged ranges to `quarantine/` (rewriting the segment without them), removes
/// empty segments, and reads producer marks from blocks after `marksAfter`. It never refuses to
/// start: whatever cannot be read is reported and set aside.
public enum SpillRecovery {
    /// `eachRecordAfterMarks` sees every record above `marksAfter` (in DELIVER layout, size checked).
    public static func run(directory: String, marksAfter: UInt64,
                           eachRecordAfterMarks: (UnsafeRawBufferPointer) -> Void = { _ in }) throws(SystemError) -> RecoveryReport {
        try Directory.create(directory)
        var report = RecoveryReport()
        let names = try Directory.entries(directory).filter { SegmentName.firstSequence(of: $0) != nil }.sorted()
        var previousLast: UInt64 = 0
        for name in names {
            guard let first = SegmentName.firstSequence(of: name) else { continue }
            let path = directory + "/" + name
            var segment = try scan(path: path, firstSequence: first, directory: directory, previousLast: &previousLast,
                                   marksAfter: marksAfter, report: &report, eachRecordAfterMarks: eachRecordAfterMarks)
            if segment.isEmpty {
                try Directory.remove(path)
                continue
            }
            segment.path = path
            report.segments.append(segment)
        }
        try Directory.sync(directory)
        return report
    }

    private static func scan(path: String, firstSequence: UInt64, directory: String, previousLast: inout UInt64,
                             marksAfter: UInt64, report: inout RecoveryReport,
                             eachRecordAfterMarks: (UnsafeRawBufferPointer) -> Void) throws(SystemError) -> SegmentInfo {
        let file = try File.open(path)
        defer { file.close() }
        let size = try file.size()
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
        defer { bytes.deallocate() }
        let read = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: bytes[..<size]), at: 0)
        let data = UnsafeRawBufferPointer(rebasing: bytes[..<read])
        var info = SegmentInfo(path: path, firstSequence: firstSequence, lastSequence: firstSequence - 1, records: 0,
                               bytes: SegmentHeader.size, firstIngestNanos: 0, lastIngestNanos: 0)

        guard SegmentHeader.isValid(data, firstSequence: firstSequence) else {
            // Not a segment we can read at all: the whole file goes to quarantine.
            let target = try quarantine(data, from: path, offset: 0, directory: directory)
            report.damage.append(.init(segment: path, offset: 0, length: data.count, lostRecords: 0,
                                       quarantineFile: target, torn: false))
            try Directory.remove(path)
            info.bytes = 0
            return info
        }

        var keep: [Range<Int>] = [0 ..< SegmentHeader.size]
        var offset = SegmentHeader.size
        let inflater = Inflater()
        while offset < data.count {
            if let header = validBlock(in: data, at: offset, after: previousLast) {
                let end = offset + header.totalSize
                keep.append(offset ..< end)
                if header.lastSequence > marksAfter {
                    readMarks(header, payload: UnsafeRawBufferPointer(rebasing: data[offset + BlockHeader.size ..< end]),
                              after: marksAfter, inflater: inflater, into: &report, eachRecordAfterMarks)
                }
                if info.isEmpty { info.firstIngestNanos = header.firstIngestNanos }
                info.lastSequence = header.lastSequence
                info.records += UInt64(header.recordCount)
                info.lastIngestNanos = header.lastIngestNanos
                previousLast = header.lastSequence
                offset = end
                continue
            }
            // Damage: find the next block that verifies; none means a torn or garbage tail.
            var next = offset + 1
            var following: BlockHeader?
            while next + BlockHeader.size <= data.count {
                if let header = validBlock(in: data, at: next, after: previousLast) { following = header; break }
                next += 1
            }
            let end = following == nil ? data.count : next
            let damaged = UnsafeRawBufferPointer(rebasing: data[offset ..< end])
            let target = try quarantine(damaged, from: path, offset: offset, directory: directory)
            let lost = following.map { $0.firstSequence - previousLast - 1 } ?? 0
            report.damage.append(.init(segment: path, offset: offset, length: end - offset, lostRecords: lost,
                                       quarantineFile: target, torn: following == nil))
            offset = end
        }

        let kept = keep.reduce(0) { $0 + $1.count }
        info.bytes = kept
        if kept != data.count {
            if keep.count == 1 || keep.last?.upperBound == kept {
                // Only a tail was cut: truncate in place.
                try file.truncate(to: kept)
                try file.sync()
            } else {
                try rewrite(path: path, data: data, keep: keep)
            }
        }
        return info
    }

    /// A block at `offset` whose header and payload verify and whose sequences follow `previous`.
    private static func validBlock(in data: UnsafeRawBufferPointer, at offset: Int, after previous: UInt64) -> BlockHeader? {
        guard offset + BlockHeader.size <= data.count,
              let header = BlockHeader.decode(UnsafeRawBufferPointer(rebasing: data[offset ..< offset + BlockHeader.size])),
              header.firstSequence > previous,
              offset + header.totalSize <= data.count else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: data[offset + BlockHeader.size ..< offset + header.totalSize])
        return CRC32.of(payload) == header.payloadChecksum ? header : nil
    }

    private static func readMarks(_ header: BlockHeader, payload: UnsafeRawBufferPointer, after marksAfter: UInt64,
                                  inflater: Inflater, into report: inout RecoveryReport,
                                  _ eachRecordAfterMarks: (UnsafeRawBufferPointer) -> Void) {
        let records = UnsafeMutableRawBufferPointer.allocate(byteCount: max(Int(header.uncompressedSize), 1), alignment: 16)
        defer { records.deallocate() }
        let output = UnsafeMutableRawBufferPointer(rebasing: records[..<Int(header.uncompressedSize)])
        guard inflater.decompress(payload, into: output) else { return }
        var at = 0
        let all = UnsafeRawBufferPointer(output)
        while at < all.count {
            let rest = UnsafeRawBufferPointer(rebasing: all[at...])
            guard let size = DeliveredRecordLayout.size(of: rest), let base = rest.baseAddress else { return }
            let record = UnsafeRawBufferPointer(rebasing: rest[..<size])
            let producer = Array(DeliveredRecordLayout.producer(of: record))
            let producerSequence = DeliveredRecordLayout.producerSequence(at: base)
            let relaySequence = DeliveredRecordLayout.relaySequence(at: base)
            if let known = report.producerMarks[producer], known.producerSequence >= producerSequence {
                // Keep the higher mark.
            } else {
                report.producerMarks[producer] = (producerSequence, relaySequence)
            }
            if relaySequence > marksAfter { eachRecordAfterMarks(record) }
            at += size
        }
    }

    private static func quarantine(_ bytes: UnsafeRawBufferPointer, from path: String, offset: Int,
                                   directory: String) throws(SystemError) -> String {
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

    /// Writes the kept ranges to a new file and renames it over the segment.
    private static func rewrite(path: String, data: UnsafeRawBufferPointer, keep: [Range<Int>]) throws(SystemError) {
        let temporary = path + ".rewrite"
        let file = try File.open(temporary, create: true)
        defer { file.close() }
        try file.truncate(to: 0)
        var at = 0
        for range in keep {
            try file.write(UnsafeRawBufferPointer(rebasing: data[range]), at: at)
            at += range.count
        }
        try file.sync()
        try Directory.rename(temporary, to: path)
    }
}
