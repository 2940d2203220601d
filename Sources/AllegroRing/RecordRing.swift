import Atomics

/// A bounded, single-writer, multi-reader ring of variable-size records, addressed by a
/// gapless 64-bit sequence number. Lock-free: the writer never waits on a lock and readers
/// never block the writer except through the gates they hold (below).
///
/// ## Memory layout
/// Two allocations, both sized to powers of two and owned by the ring for its whole life:
///
/// ```
/// data:  [ byteCapacity bytes ]  records, each at an 8-aligned position:
///          +0  u64  size  (bytes of the record that follows; native order, in-memory only)
///          +8  size bytes, the record
///          then padding to the next multiple of 8
///        A record never wraps: if it does not fit before the end, the writer starts it at
///        offset 0 of the next lap and the tail end of the old lap is unused.
/// slots: [ slotCapacity x u64 ]  slots[seq & slotMask] = the record's byte position
/// ```
///
/// Byte positions are monotonic 64-bit counters (`position & byteMask` is the offset into
/// `data`), so "how many bytes are in use" is `writePosition - tailPosition` and never wraps.
///
/// ## Sequences and atomics
/// - `head` (atomic): the next sequence to be written. Records `[tail, head)` are readable.
/// - `tail` (atomic): the oldest sequence still held.
/// - gates (atomic, one per concurrent reader): the next sequence that reader needs. The writer
///   never reclaims a record at or after any gate (the relay's spill thread holds one: a record
///   leaves the ring only once it is fsync'd in the spill).
///
/// ## Happens-before
/// - Writer: writes the record bytes and its slot, then `head.store(seq + 1, .releasing)`.
///   Reader: `head.load(.acquiring)` and then reads slots and bytes of sequences below it. The
///   release/acquire pair makes the bytes visible before the reader can see the sequence.
/// - Reader: finishes reading sequence `s`, then `gate.store(s + 1, .releasing)`. Writer: reclaims
///   only below a limit it read with `gate.load(.acquiring)` from every gate (kept until it
///   blocks: gates only move forward). So the reader's last read of a record happens before the
///   writer's first overwrite of it: no data race, and TSan agrees.
/// - `tail` is stored with release after reclaiming; it tells readers what `earliest` means.
///
/// ## Threads
/// Exactly one thread calls the writer methods (`append`, `addGate`). A reader on another
/// thread must hold a gate and read only sequences in `[its gate, head)`. A reader on the
/// writer's own thread may read without a gate, checking `tail` first (records it has not
/// gated may be reclaimed by the next `append`).
///
/// `@unchecked Sendable` because the raw memory is shared across threads under the protocol
/// above, which the type system cannot express; every shared scalar is an atomic.
public final class RecordRing: @unchecked Sendable {
    public let byteCapacity: Int
    public let slotCapacity: Int
    private let byteMask: UInt64
    private let slotMask: UInt64
    private let data: UnsafeMutableRawPointer
    private let slots: UnsafeMutablePointer<UInt64>

    private let headSequence: ManagedAtomic<UInt64>
    private let tailSequence: ManagedAtomic<UInt64>
    private var gates: [RingGate] = []
    /// The lowest gate when last scanned (writer-only). Gates only move forward, so it stays a
    /// bound below which records may be reclaimed, and the gates are scanned again only when it
    /// blocks: a scan per append (a full ring reclaims on every one) cost a retain and a release
    /// per gate, about 8 % of a flood's relay CPU (BENCHMARKS.md, issue 22's seventh step).
    @exclusivity(unchecked) private var knownGateLimit: UInt64 = 0

    // Writer-only state. Only the writer's thread touches it (the thread rules above), so the
    // runtime's exclusivity check on every append buys nothing (such checks on per-record state,
    // this and the relay's, were about 7% of the I/O thread at 2 M records/s: BENCHMARKS.md,
    // "Codecs").
    @exclusivity(unchecked) private var writePosition: UInt64 = 0
    @exclusivity(unchecked) private var tailPosition: UInt64 = 0

    static let recordHeaderSize = 8

    /// A ring of at least `byteCapacity` bytes and `slotCapacity` records (each rounded up to a
    /// power of two), whose first record will get sequence `firstSequence`.
    public init(byteCapacity: Int, slotCapacity: Int, firstSequence: UInt64 = 1) {
        self.byteCapacity = Self.powerOfTwo(atLeast: max(byteCapacity, 64))
        self.slotCapacity = Self.powerOfTwo(atLeast: max(slotCapacity, 2))
        byteMask = UInt64(self.byteCapacity - 1)
        slotMask = UInt64(self.slotCapacity - 1)
        data = .allocate(byteCount: self.byteCapacity, alignment: 64)
        slots = .allocate(capacity: self.slotCapacity)
        slots.initialize(repeating: 0, count: self.slotCapacity)
        headSequence = ManagedAtomic(firstSequence)
        tailSequence = ManagedAtomic(firstSequence)
    }

    deinit {
        data.deallocate()
        slots.deallocate()
    }

    /// The next sequence the writer will assign; records below it are readable.
    public var head: UInt64 { headSequence.load(ordering: .acquiring) }

    /// The oldest sequence still held.
    public var tail: UInt64 { tailSequence.load(ordering: .acquiring) }

    /// Records held now.
    public var count: Int { Int(head - tail) }

    /// Bytes in use now (writer's thread only: an estimate elsewhere).
    public var bytesInUse: Int { Int(writePosition - tailPosition) }

    /// The largest record `append` can ever take.
    public var maxRecordSize: Int { byteCapacity - Self.recordHeaderSize }

    /// Registers a reader on another thread that needs every record from `sequence` on.
    /// Writer's thread only (or before the writer starts).
    public func addGate(from sequence: UInt64) -> RingGate {
        let gate = RingGate(sequence)
        gates.append(gate)
        knownGateLimit = min(knownGateLimit, sequence)
        return gate
    }

    /// Appends a record of `size` bytes that `fill` writes (given the space and the record's
    /// sequence), and returns that sequence; or nil when the ring cannot make room without
    /// reclaiming a record at or after a gate (the caller pushes back and tries again later), or
    /// when `size` can never fit.
    /// Writer's thread only. Allocates nothing.
    @inline(__always)
    public func append(size: Int, _ fill: (UnsafeMutableRawBufferPointer, UInt64) -> Void) -> UInt64? {
        guard size >= 0, size <= maxRecordSize else { return nil }
        let needed = UInt64((Self.recordHeaderSize + size + 7) & ~7)
        var start = writePosition
        let capacity = UInt64(byteCapacity)
        if (start & byteMask) + needed > capacity { start = (start | byteMask) &+ 1 }
        let end = start + needed
        let sequence = headSequence.load(ordering: .relaxed)
        var oldest = tailSequence.load(ordering: .relaxed)

        if end - tailPosition > capacity || sequence - oldest >= UInt64(slotCapacity) {
            while oldest < sequence && (end - tailPosition > capacity || sequence - oldest >= UInt64(slotCapacity)) {
                if oldest >= knownGateLimit {
                    knownGateLimit = gateLimit()
                    if oldest >= knownGateLimit { return nil }
                }
                oldest += 1
                tailPosition = oldest < sequence ? slots[Int(oldest & slotMask)] : start
            }
            if oldest == sequence { tailPosition = start }
            tailSequence.store(oldest, ordering: .releasing)
        } else if oldest == sequence {
            tailPosition = start
        }

        let offset = Int(start & byteMask)
        (data + offset).storeBytes(of: UInt64(size), as: UInt64.self)
        fill(UnsafeMutableRawBufferPointer(start: data + offset + Self.recordHeaderSize, count: size), sequence)
        slots[Int(sequence & slotMask)] = start
        writePosition = end
        headSequence.store(sequence + 1, ordering: .releasing)
        return sequence
    }

    /// The bytes of record `sequence`. The caller guarantees `tail <= sequence < head` and that
    /// the record stays held while it reads (a gate, or the writer's own thread).
    @inline(__always)
    public func record(_ sequence: UInt64) -> UnsafeRawBufferPointer {
        let offset = Int(slots[Int(sequence & slotMask)] & byteMask)
        let size = Int((data + offset).load(as: UInt64.self))
        return UnsafeRawBufferPointer(start: data + offset + Self.recordHeaderSize, count: size)
    }

    private func gateLimit() -> UInt64 {
        var limit = UInt64.max
        for gate in gates { limit = min(limit, gate.sequence.load(ordering: .acquiring)) }
        return limit
    }

    private static func powerOfTwo(atLeast value: Int) -> Int {
        var result = 1
        while result < value { result <<= 1 }
        return result
    }
}

/// A concurrent reader's claim on a `RecordRing`: the next sequence it needs. The reader
/// advances it (with release) once it is done with everything below; the writer never
/// reclaims a record at or after it.
public final class RingGate: Sendable {
    let sequence: ManagedAtomic<UInt64>

    init(_ sequence: UInt64) { self.sequence = ManagedAtomic(sequence) }

    /// The next sequence this reader needs.
    public var next: UInt64 { sequence.load(ordering: .relaxed) }

    /// Releases every record below `next`.
    public func advance(to next: UInt64) { sequence.store(next, ordering: .releasing) }
}
