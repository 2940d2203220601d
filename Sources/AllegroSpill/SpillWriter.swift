import AllegroPosix

/// Appends compressed blocks of DELIVER-layout records to the newest segment file, rolls to a
/// new segment past a size, and syncs on request (the caller groups blocks between syncs).
/// Used by one thread only: the spill thread.
///
/// A failed write leaves the segment as it was before the block (it is truncated back), so a
/// retry after the disk recovers appends cleanly.
///
/// The newest segment is kept written ahead with zeros, up to `preallocateBytes` beyond its last
/// block, so that a group commit overwrites blocks the file already has instead of growing it: an
/// fdatasync that changes no metadata commits no journal transaction, which halves its latency and
/// its CPU on the disks measured here (BENCHMARKS.md; PostgreSQL zero-fills its WAL segments for
/// the same reason). The zeros go out `zeroStepBytes` at a time, at most one step per block, so no
/// single group commit carries more than a step of them (a 1 MiB step stalled one for ms). A
/// segment is cut back to its last block when it is sealed or closed; after a crash the newest
/// one may end in zeros, which recovery recognises as unwritten space, not damage.
///
/// A failed fsync is final for this writer: Linux may drop the dirty pages it could not write and
/// report success on the next fsync ("fsyncgate"), so once `sync()` has failed it fails every
/// time after, and nothing written since the last good sync is ever called durable. A restart
/// runs recovery, which verifies every block that is really on disk.
public final class SpillWriter {
    public let directory: String
    public let catalog: SegmentCatalog
    private let segmentBytes: Int
    private let segmentNanos: UInt64
    private var segmentStartedAt: UInt64 = 0
    private let compressor: BlockCompressor
    private var file: File?
    private var offset = 0
    /// Bytes the newest segment's file holds: `offset`, then zeros written ahead.
    private var extent = 0
    private let preallocateBytes: Int
    /// One step of zeros, `min(preallocateBytes, zeroStepBytes, segmentBytes)` (nil: no preallocation).
    private let zeros: UnsafeMutableRawBufferPointer?
    /// The most zeros written ahead at once: one step grows the file (a journal commit) once
    /// per 64 KiB of blocks, and adds about a 64 KiB write to that commit's fdatasync.
    public static let zeroStepBytes = 64 << 10
    private var staging: UnsafeMutableRawBufferPointer
    private var compressed: UnsafeMutableRawBufferPointer
    private var needsDirectorySync = false
    private var unsynced = false
    /// The first failed fsync, repeated by every later `sync()`.
    private var syncFailure: SystemError?

    /// `catalog` holds the segments recovery found; appending continues in a new segment. A
    /// segment is sealed past `segmentBytes` or once it is `segmentNanos` old, so retention by
    /// age can remove whole files.
    /// `preallocateBytes`: zeros written ahead of the newest segment's blocks (0: none).
    public init(directory: String, catalog: SegmentCatalog, segmentBytes: Int, segmentNanos: UInt64, codec: SpillCodec = .deflate, level: Int32,
                preallocateBytes: Int = 0) {
        self.directory = directory
        self.preallocateBytes = preallocateBytes
        if preallocateBytes > 0 {
            let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: min(preallocateBytes, Self.zeroStepBytes, max(segmentBytes, 1)),
                                                                alignment: 16)
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            self.zeros = zeros
        } else {
            zeros = nil
        }
        self.catalog = catalog
        self.segmentBytes = segmentBytes
        self.segmentNanos = segmentNanos
        compressor = BlockCompressor(codec: codec, level: level)
        staging = .allocate(byteCount: 256 * 1024, alignment: 16)
        compressed = .allocate(byteCount: 256 * 1024, alignment: 16)
    }

    deinit {
        file?.close()
        staging.deallocate()
        compressed.deallocate()
        zeros?.deallocate()
    }

    /// Space for the records of the next block; grows (rarely) to hold `minimum` bytes.
    public func stagingSpace(minimum: Int) -> UnsafeMutableRawBufferPointer {
        if staging.count < minimum {
            let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: minimum, alignment: 16)
            staging.deallocate()
            staging = larger
        }
        return staging
    }

    /// Compresses the first `count` staged bytes (records `first ... first + records - 1`) into
    /// one block and appends it. Throws `SystemError` when the write fails (nothing is left
    /// behind) or zlib fails.
    /// Returns the block's size on disk.
    @discardableResult
    public func appendBlock(records: UInt32, firstSequence: UInt64, stagedBytes count: Int,
                            firstIngest: UInt64, lastIngest: UInt64) throws(SystemError) -> Int {
        let input = UnsafeRawBufferPointer(rebasing: staging[..<count])
        let bound = compressor.bound(count) + BlockHeader.size
        if compressed.count < bound {
            compressed.deallocate()
            compressed = .allocate(byteCount: bound, alignment: 16)
        }
        let payload = UnsafeMutableRawBufferPointer(rebasing: compressed[BlockHeader.size...])
        guard let size = compressor.compress(input, into: payload), let base = compressed.baseAddress else {
            throw SystemError("compress (\(compressor.codec.rawValue))", errno: 5)
        }
        let header = BlockHeader(codec: compressor.codec.blockCodec, firstSequence: firstSequence, recordCount: records,
                                 uncompressedSize: UInt32(count), compressedSize: UInt32(size),
                                 payloadChecksum: CRC32.of(UnsafeRawBufferPointer(rebasing: payload[..<size])),
                                 firstIngestNanos: firstIngest, lastIngestNanos: lastIngest)
        header.encode(into: base)
        let block = UnsafeRawBufferPointer(rebasing: compressed[..<header.totalSize])

        let full = offset + block.count > segmentBytes || Clock.monotonicNanos - segmentStartedAt > segmentNanos
        if file == nil || full && offset > SegmentHeader.size {
            try roll(firstSequence: firstSequence)
        }
        guard let file else { return 0 }
        preallocate(file, beyond: offset + block.count)
        do throws(SystemError) {
            try file.write(block, at: offset)
        } catch {
            try? file.truncate(to: offset)
            extent = offset
            throw error
        }
        offset += block.count
        extent = max(extent, offset)
        unsynced = true
        catalog.updateNewest { segment in
            if segment.isEmpty { segment.firstIngestNanos = firstIngest }
            segment.lastSequence = header.lastSequence
            segment.records += UInt64(records)
            segment.bytes = self.offset
            segment.lastIngestNanos = lastIngest
            segment.lastBlockOffset = self.offset - block.count
        }
        return block.count
    }

    /// Makes every appended block durable (and a new segment's directory entry). Once it has
    /// failed, it throws that failure again every time (see the type's comment).
    public func sync() throws(SystemError) {
        if let syncFailure { throw syncFailure }
        guard unsynced || needsDirectorySync else { return }
        do throws(SystemError) {
            try file?.sync()
            if needsDirectorySync {
                try Directory.sync(directory)
                needsDirectorySync = false
            }
        } catch {
            syncFailure = SystemError(error.call + " (data since the last good fsync is not trusted; restart the relay to recover the spill)",
                                      errno: error.errno)
            throw error
        }
        unsynced = false
    }

    /// Segments sealed (complete and fsync'd) since the last `takeSealed()`: what the state
    /// database records, so that start-up need not read them again.
    private var sealed: [SegmentInfo] = []

    public func takeSealed() -> [SegmentInfo] {
        defer { sealed.removeAll() }
        return sealed
    }

    /// Writes one step of zeros ahead once fewer than `preallocateBytes` less a step lie beyond
    /// `end` (where the block about to be written ends), after the file's end or the block,
    /// whichever is later. A failure (a full disk) is not one: the zeros written are cut off again
    /// and the block is appended as without preallocation.
    private func preallocate(_ file: File, beyond end: Int) {
        // Up to about the segment's size: a segment is sealed past it, and cut back then.
        guard let zeros, extent < segmentBytes, extent < end + preallocateBytes - zeros.count else { return }
        let at = max(extent, end)
        do throws(SystemError) {
            try file.write(UnsafeRawBufferPointer(zeros), at: at)
            extent = at + zeros.count
        } catch {
            try? file.truncate(to: offset)
            extent = offset
        }
    }

    /// Cuts the zeros written ahead off the newest segment (before its last sync).
    private func trimPreallocation() throws(SystemError) {
        guard let file, extent > offset else { return }
        try file.truncate(to: offset)
        extent = offset
        unsynced = true
    }

    /// Seals the current segment (synced) and starts a new one whose first record is `firstSequence`.
    private func roll(firstSequence: UInt64) throws(SystemError) {
        if let file {
            try trimPreallocation()
            try sync()
            file.close()
            self.file = nil
            if let newest = catalog.snapshot().last, !newest.isEmpty { sealed.append(newest) }
        }
        let path = directory + "/" + SegmentName.name(firstSequence: firstSequence)
        let created = try File.open(path, create: true)
        do throws(SystemError) {
            try created.truncate(to: 0)
            try created.write(SegmentHeader.encode(firstSequence: firstSequence), at: 0)
        } catch {
            created.close()
            try? Directory.remove(path)
            throw error
        }
        file = created
        offset = SegmentHeader.size
        extent = offset
        segmentStartedAt = Clock.monotonicNanos
        needsDirectorySync = true
        catalog.append(SegmentInfo(path: path, firstSequence: firstSequence, lastSequence: firstSequence - 1,
                                   records: 0, bytes: offset, firstIngestNanos: 0, lastIngestNanos: 0))
    }

    /// Closes the current segment (after a final sync by the caller), cut back to its last
    /// block and synced again if zeros were written ahead (a failure costs only a scan of the
    /// zeros at the next start).
    public func close() {
        if extent > offset, syncFailure == nil {
            try? trimPreallocation()
            try? sync()
        }
        file?.close()
        file = nil
    }
}
