import AllegroWire

/// What a block's records say about the block, read from the records themselves: the header
/// and the payload carry separate checksums, so when the two disagree (a header rewritten with
/// a valid checksum) the checksummed records are the truth.
struct BlockContent: Equatable {
    var firstSequence: UInt64
    var lastSequence: UInt64
    var records: UInt32
    var firstIngestNanos: UInt64
    var lastIngestNanos: UInt64

    /// The header this block should have, keeping the payload's sizes and checksum.
    func correcting(_ header: BlockHeader) -> BlockHeader {
        var fixed = header
        fixed.firstSequence = firstSequence
        fixed.recordCount = records
        fixed.firstIngestNanos = firstIngestNanos
        fixed.lastIngestNanos = lastIngestNanos
        return fixed
    }

    func agrees(with header: BlockHeader) -> Bool {
        correcting(header) == header
    }

    /// Decompresses `payload` (`header.uncompressedSize` bytes expected) and walks its records:
    /// each must be a whole DELIVER-layout record and their relay sequences must run on with no
    /// gap. Nil when the payload does not decompress or its records do not hold together.
    /// `eachRecord` then sees every record, size checked, in order: only for a block whose
    /// records all hold together, so a damaged block adds nothing to marks or counts.
    static func read(_ header: BlockHeader, payload: UnsafeRawBufferPointer, decompressor: BlockDecompressor,
                     _ eachRecord: (UnsafeRawBufferPointer) -> Void = { _ in }) -> BlockContent? {
        let size = Int(header.uncompressedSize)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
        defer { storage.deallocate() }
        let output = UnsafeMutableRawBufferPointer(rebasing: storage[..<size])
        guard size > 0, decompressor.decompress(header.codec, payload, into: output) else { return nil }
        let all = DeliveredRecords(UnsafeRawBufferPointer(output))
        guard all.isWhole else { return nil }
        var content: BlockContent?
        for record in all {
            guard let base = record.baseAddress else { return nil }
            let sequence = DeliveredRecordLayout.relaySequence(at: base)
            let ingest = DeliveredRecordLayout.ingestNanos(at: base)
            if var known = content {
                guard known.lastSequence != .max, sequence == known.lastSequence + 1, known.records < .max else { return nil }
                known.lastSequence = sequence
                known.records += 1
                known.lastIngestNanos = ingest
                content = known
            } else {
                guard sequence >= 1 else { return nil }
                content = BlockContent(firstSequence: sequence, lastSequence: sequence, records: 1,
                                       firstIngestNanos: ingest, lastIngestNanos: ingest)
            }
        }
        if content != nil { for record in all { eachRecord(record) } }
        return content
    }
}
