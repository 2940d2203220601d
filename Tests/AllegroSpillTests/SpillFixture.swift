import AllegroPosix
import AllegroSpill
import AllegroWire
import Foundation

/// A temporary spill directory with a writer on it, and records in DELIVER layout written from
/// PROTOCOL.md's table (40-byte header: relay_seq, ingest_ns, producer_seq, event_ns, payload
/// length, then the four short-field lengths; then producer, session, kind, content type,
/// payload). Payloads are "p-SEQUENCE", so what a reader returns can be checked record by record.
final class SpillFixture {
    let directory: String
    private(set) var writer: SpillWriter
    let segmentBytes: Int
    let preallocateBytes: Int

    /// `segmentBytes: 1` puts every block in a segment of its own; `preallocateBytes`: zeros the
    /// writer writes ahead of its blocks.
    init(segmentBytes: Int = 1 << 20, codec: SpillCodec = .deflate, preallocateBytes: Int = 0) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-spill-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.segmentBytes = segmentBytes
        self.preallocateBytes = preallocateBytes
        writer = Self.makeWriter(directory, catalog: SegmentCatalog(), segmentBytes: segmentBytes, codec: codec,
                                 preallocateBytes: preallocateBytes)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    static func makeWriter(_ directory: String, catalog: SegmentCatalog, segmentBytes: Int = 1 << 20,
                           codec: SpillCodec = .deflate, preallocateBytes: Int = 0) -> SpillWriter {
        SpillWriter(directory: directory, catalog: catalog, segmentBytes: segmentBytes, segmentNanos: .max / 2, codec: codec, level: 1,
                    preallocateBytes: preallocateBytes)
    }

    /// A new writer on what recovery left, as a restart would have (writing `codec` from then
    /// on). `marksAfter` above the last sequence makes recovery read headers only (no block is
    /// decompressed for marks).
    func restart(marksAfter: UInt64 = 0, durableThrough: UInt64 = 0, explained: [ClosedRange<UInt64>] = [],
                 sealed: [SegmentInfo] = [], codec: SpillCodec = .deflate) throws(SystemError) -> RecoveryReport {
        let report = try SpillRecovery.run(directory: directory, marksAfter: marksAfter, durableThrough: durableThrough,
                                           explained: explained,
                                           sealed: Dictionary(sealed.map { ($0.name, $0) }) { first, _ in first })
        writer = Self.makeWriter(directory, catalog: SegmentCatalog(report.segments), segmentBytes: segmentBytes, codec: codec,
                                 preallocateBytes: preallocateBytes)
        return report
    }

    /// Writes `blocks` blocks of `perBlock` records from 1 on, synced, and closes the writer.
    func fill(blocks: Int, perBlock: Int = 10) throws(SystemError) {
        for block in 0 ..< blocks { try appendBlock(first: UInt64(block * perBlock + 1), count: perBlock) }
        try writer.sync()
        writer.close()
    }

    func path(_ name: String) -> String { directory + "/" + name }

    static func record(_ sequence: UInt64, producer: String = "p", session: String = "s", kind: String = "k") -> [UInt8] {
        let producerBytes = Array(producer.utf8), session = Array(session.utf8), kind = Array(kind.utf8)
        let payload = Array("p-\(sequence)".utf8)
        var bytes: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        append(sequence)                       // relay_seq
        append(UInt64(1_000 + sequence))       // ingest_ns
        append(sequence)                       // producer_seq
        append(UInt64(500 + sequence))         // event_ns
        append(UInt32(payload.count))
        bytes += [UInt8(producerBytes.count), UInt8(session.count), UInt8(kind.count), 0]
        return bytes + producerBytes + session + kind + payload
    }

    /// Stages records `first ..< first + count` and appends them as one block.
    func appendBlock(first: UInt64, count: Int) throws(SystemError) {
        let bytes = (0 ..< UInt64(count)).flatMap { Self.record(first + $0) }
        let space = writer.stagingSpace(minimum: bytes.count)
        space.copyBytes(from: bytes)
        try writer.appendBlock(records: UInt32(count), firstSequence: first, stagedBytes: bytes.count,
                               firstIngest: 1_000 + first, lastIngest: 1_000 + first + UInt64(count) - 1)
    }

    /// Every record a reader returns from `sequence` on, as (relay sequence, payload).
    func readAll(from sequence: UInt64 = 1, catalog: SegmentCatalog? = nil) -> [(UInt64, String)] {
        let reader = SpillReader(catalog: catalog ?? writer.catalog, from: sequence)
        var found: [(UInt64, String)] = []
        while reader.nextBlock(limit: .max, { records, _ in
            for record in DeliveredRecords(records) {
                guard let base = record.baseAddress else { return }
                let payloadLength = DeliveredRecordLayout.payloadLength(at: base)
                let payload = String(decoding: record[record.count - payloadLength ..< record.count], as: UTF8.self)
                found.append((DeliveredRecordLayout.relaySequence(at: base), payload))
            }
        }) {}
        return found
    }

    var segmentFiles: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
    }

    func size(of name: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: directory + "/" + name))?[.size] as? Int) ?? -1
    }
}
