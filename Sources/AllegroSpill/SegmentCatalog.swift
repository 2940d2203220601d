import Synchronization

/// What is known about one segment file: its sequence range, valid length and time range.
public struct SegmentInfo: Sendable, Equatable {
    public var path: String
    public var firstSequence: UInt64
    /// Last relay sequence in the segment; `firstSequence - 1` while it is empty.
    public var lastSequence: UInt64
    public var records: UInt64
    /// Bytes of valid data (header and whole blocks).
    public var bytes: Int
    public var firstIngestNanos: UInt64
    public var lastIngestNanos: UInt64
    /// Where the last block starts (0 while the segment is empty).
    public var lastBlockOffset: Int = 0

    public init(path: String, firstSequence: UInt64, lastSequence: UInt64, records: UInt64, bytes: Int,
                firstIngestNanos: UInt64, lastIngestNanos: UInt64, lastBlockOffset: Int = 0) {
        self.path = path
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
        self.records = records
        self.bytes = bytes
        self.firstIngestNanos = firstIngestNanos
        self.lastIngestNanos = lastIngestNanos
        self.lastBlockOffset = lastBlockOffset
    }

    public var isEmpty: Bool { records == 0 }

    /// The file's name (the path's last component).
    public var name: String { path.split(separator: "/").last.map(String.init) ?? path }
}

/// The spill's segments in sequence order, shared by the spill writer (which appends and
/// retires them) and replay readers (which take snapshots). Every access takes a mutex; none is
/// on a per-record path.
public final class SegmentCatalog: Sendable {
    private let segments: Mutex<[SegmentInfo]>
    private let damageHandler = Mutex<(@Sendable (ReadDamage) -> Void)?>(nil)

    /// Who hears of blocks a reader found damaged (set once, by the spill's owner).
    public func onReadDamage(_ handler: @escaping @Sendable (ReadDamage) -> Void) {
        damageHandler.withLock { $0 = handler }
    }

    /// Called by a reader, on its own thread, before it goes past the damage.
    func report(_ damage: ReadDamage) {
        let handler = damageHandler.withLock { $0 }
        handler?(damage)
    }

    public init(_ initial: [SegmentInfo] = []) {
        segments = Mutex(initial.sorted { $0.firstSequence < $1.firstSequence })
    }

    public func snapshot() -> [SegmentInfo] { segments.withLock { $0 } }

    /// The oldest relay sequence held in the spill, or nil when it holds none.
    public var oldestSequence: UInt64? {
        segments.withLock { list in list.first { !$0.isEmpty }?.firstSequence }
    }

    public var totalBytes: Int { segments.withLock { $0.reduce(0) { $0 + $1.bytes } } }
    public var count: Int { segments.withLock { $0.count } }

    func append(_ segment: SegmentInfo) { segments.withLock { $0.append(segment) } }

    /// Updates the newest segment (the one being written).
    func updateNewest(_ body: (inout SegmentInfo) -> Void) {
        segments.withLock { list in
            guard !list.isEmpty else { return }
            body(&list[list.count - 1])
        }
    }

    /// Removes and returns the oldest segment, unless it is the only one (being written).
    public func removeOldest() -> SegmentInfo? {
        segments.withLock { list in list.count > 1 ? list.removeFirst() : nil }
    }
}

/// Records a reader could not read: a block whose payload fails its checksum (or does not
/// inflate), or a block header that does not verify in the middle of a segment (then every number
/// from the reader's position to the segment's last). Start-up does not re-read sealed segments
/// it has verified before, so damage that came later is found here.
public struct ReadDamage: Sendable, Equatable {
    public var segment: String
    public var offset: Int
    public var firstSequence: UInt64
    public var lastSequence: UInt64
}

/// Segment file names: the first relay sequence, zero-padded so names sort in sequence order.
public enum SegmentName {
    public static let suffix = ".seg"

    public static func name(firstSequence: UInt64) -> String {
        let digits = String(firstSequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
    }

    public static func firstSequence(of name: String) -> UInt64? {
        guard name.hasSuffix(suffix), name.count == 20 + suffix.count else { return nil }
        return UInt64(name.dropLast(suffix.count))
    }
}

/// The 16-byte header at the start of every segment file: magic "ALSG", format version,
/// reserved, and the segment's first relay sequence.
enum SegmentHeader {
    static let size = 16
    static let magic: UInt32 = 0x4753_4C41 // "ALSG" little-endian
    static let version: UInt16 = 1

    static func encode(firstSequence: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { out in
            out.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
            out.storeBytes(of: firstSequence.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        return bytes
    }

    /// The first relay sequence a valid header names, or nil when the magic or version is wrong.
    static func firstSequence(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count >= size,
              UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic,
              UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) == version else { return nil }
        let first = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return first >= 1 && first <= UInt64.max / 2 ? first : nil
    }
}
