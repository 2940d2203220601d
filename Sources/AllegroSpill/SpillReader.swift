import AllegroPosix
import AllegroWire

/// Reads records back from the spill in relay-sequence order, from a given sequence, block by
/// block: blocks before the start are skipped by their headers without decompressing. It reads
/// only blocks whose last sequence is at or below `limit` (what the writer has published), so it
/// never sees a block being written. Used by one replay thread.
public final class SpillReader {
    private let catalog: SegmentCatalog
    private var next: UInt64
    private var file: File?
    private var segmentFirst: UInt64 = 0
    private var segment: SegmentInfo?
    private var offset = 0
    private let decompressor = BlockDecompressor()
    private var compressed = UnsafeMutableRawBufferPointer.allocate(byteCount: 128 * 1024, alignment: 16)
    private var records = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)

    /// A reader whose first record will be the first one at or after `sequence`.
    public init(catalog: SegmentCatalog, from sequence: UInt64) {
        self.catalog = catalog
        next = sequence
    }

    deinit {
        file?.close()
        compressed.deallocate()
        records.deallocate()
    }

    /// Decompresses the next block holding records at or after the position, and calls `body`
    /// with those records (DELIVER layout, back to back) and their count. Returns false when
    /// nothing more is readable now (end of the spill, or of what the writer has published).
    public func nextBlock(limit: UInt64, _ body: (UnsafeRawBufferPointer, Int) -> Void) -> Bool {
        while true {
            guard let file = openSegment() else { return false }
            var headerBytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            let header: BlockHeader? = withUnsafeMutableBytes(of: &headerBytes) { raw in
                guard (try? file.read(into: raw, at: offset)) == BlockHeader.size else { return nil }
                return BlockHeader.decode(UnsafeRawBufferPointer(raw))
            }
            guard let header else {
                if let segment, let current = catalog.snapshot().first(where: { $0.path == segment.path }),
                   offset < current.bytes, next <= current.lastSequence {
                    // A header that does not verify where the segment has data: the rest of it
                    // cannot be found. Reported, then passed over.
                    catalog.report(ReadDamage(segment: current.path, offset: offset, firstSequence: next,
                                              lastSequence: current.lastSequence))
                    next = current.lastSequence + 1
                    self.segment = nil
                    file.close()
                    self.file = nil
                    continue
                }
                // End of this segment's data: move on if a later segment exists, else wait.
                if advanceSegment() { continue }
                return false
            }
            guard header.lastSequence <= limit else { return false }
            let blockStart = offset
            offset += header.totalSize
            if header.lastSequence < next { continue }
            // A block damaged after recovery checked it (or in a sealed segment start-up did not
            // read again) is reported, then passed over.
            guard let payload = readPayload(file, header, at: blockStart + BlockHeader.size) else {
                catalog.report(ReadDamage(segment: segment?.path ?? "", offset: blockStart,
                                          firstSequence: max(header.firstSequence, next), lastSequence: header.lastSequence))
                next = header.lastSequence + 1
                continue
            }
            // Records before the position (the first block of a replay) are left out.
            var records = DeliveredRecords(payload).makeIterator()
            var count = Int(header.recordCount)
            var sequence = header.firstSequence
            while sequence < next, records.next() != nil {
                sequence += 1
                count -= 1
            }
            next = header.lastSequence + 1
            if count > 0 { body(UnsafeRawBufferPointer(rebasing: payload[records.offset...]), count) }
            return true
        }
    }

    private func readPayload(_ file: File, _ header: BlockHeader, at position: Int) -> UnsafeRawBufferPointer? {
        let compressedSize = Int(header.compressedSize), size = Int(header.uncompressedSize)
        if compressed.count < compressedSize {
            compressed.deallocate()
            compressed = .allocate(byteCount: compressedSize, alignment: 16)
        }
        if records.count < size {
            records.deallocate()
            records = .allocate(byteCount: size, alignment: 16)
        }
        let input = UnsafeMutableRawBufferPointer(rebasing: compressed[..<compressedSize])
        guard (try? file.read(into: input, at: position)) == compressedSize,
              CRC32.of(UnsafeRawBufferPointer(input)) == header.payloadChecksum else { return nil }
        let output = UnsafeMutableRawBufferPointer(rebasing: records[..<size])
        guard decompressor.decompress(header.codec, UnsafeRawBufferPointer(input), into: output) else { return nil }
        return UnsafeRawBufferPointer(output)
    }

    /// The open segment holding `next` (or the first after it), opening it if needed.
    private func openSegment() -> File? {
        if let file { return file }
        let segments = catalog.snapshot()
        guard let segment = segments.last(where: { $0.firstSequence <= next }) ?? segments.first(where: { $0.firstSequence > next }) else {
            return nil
        }
        guard let opened = try? File.open(segment.path, readOnly: true) else {
            // Removed by retention meanwhile: skip past it.
            if let later = segments.first(where: { $0.firstSequence > segment.firstSequence }) {
                next = max(next, later.firstSequence)
            }
            return nil
        }
        // Recovery checked the segment header at start; blocks verify themselves.
        file = opened
        self.segment = segment
        segmentFirst = segment.firstSequence
        offset = SegmentHeader.size
        return opened
    }

    /// Moves to the segment after the current one; false when there is none yet.
    private func advanceSegment() -> Bool {
        let segments = catalog.snapshot()
        guard let later = segments.first(where: { $0.firstSequence > segmentFirst }) else { return false }
        file?.close()
        file = nil
        next = max(next, later.firstSequence)
        return true
    }
}
