/// The send side of one connection: frames are encoded straight into one owned allocation and
/// drained by the owner (for example with `write(2)`).
///
/// Guarantees: encoding allocates only when the buffer must grow (it keeps its size after),
/// so a steady stream of records allocates nothing; the owner bounds growth by checking
/// `count` before encoding more (backpressure).
public final class OutboundBuffer {
    private var storage: UnsafeMutableRawBufferPointer
    private var readIndex = 0
    private var writeIndex = 0
    /// Bytes the buffer's contents have moved towards the front in total (compaction, or the
    /// reset when it empties). A `FrameMark` holds `index + shifted`, a position that stays
    /// true while bytes move under an open frame.
    private var shifted = 0
    #if DEBUG
    /// Frames begun and not yet ended. Their length prefix is not written yet, so their bytes
    /// must never be drained: the owner drains only between frames (asserted in debug builds).
    private var openFrames = 0
    #endif

    public init(initialCapacity: Int = 16 * 1024) {
        storage = .allocate(byteCount: max(initialCapacity, 64), alignment: 16)
    }

    deinit { storage.deallocate() }

    /// Encoded bytes not yet drained.
    public var count: Int { writeIndex - readIndex }
    public var isEmpty: Bool { writeIndex == readIndex }
    public var capacity: Int { storage.count }

    /// The encoded bytes not yet drained.
    public var readable: UnsafeRawBufferPointer {
        #if DEBUG
        assert(openFrames == 0, "drained with a frame open: its length prefix is not written yet")
        #endif
        return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage)[readIndex ..< writeIndex])
    }

    /// Drops `count` drained bytes from the front.
    public func consume(_ count: Int) {
        #if DEBUG
        assert(openFrames == 0, "consumed with a frame open")
        #endif
        readIndex = min(readIndex + max(count, 0), writeIndex)
        if readIndex == writeIndex {
            shifted += readIndex
            readIndex = 0
            writeIndex = 0
        }
    }

    /// A copy of the unread bytes (tests and tools).
    public var bytes: [UInt8] { Array(readable) }

    // MARK: Primitive writes

    /// Makes room for `count` more bytes and returns where they go; the caller must fill them
    /// all and then call `advance(count)`.
    public func reserve(_ count: Int) -> UnsafeMutableRawPointer {
        if storage.count - writeIndex < count {
            if readIndex > 0 {
                let live = writeIndex - readIndex
                if let base = storage.baseAddress { base.copyMemory(from: base + readIndex, byteCount: live) }
                shifted += readIndex
                readIndex = 0
                writeIndex = live
            }
            if storage.count - writeIndex < count {
                var size = storage.count
                while size - writeIndex < count { size *= 2 }
                let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
                if let base = storage.baseAddress {
                    larger.baseAddress?.copyMemory(from: base, byteCount: writeIndex)
                }
                storage.deallocate()
                storage = larger
            }
        }
        // Capacity is at least 64 bytes, so the base address exists.
        return storage.baseAddress.unsafelyUnwrapped + writeIndex
    }

    public func advance(_ count: Int) { writeIndex += count }

    func put<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        reserve(size).storeBytes(of: value.littleEndian, as: T.self)
        writeIndex += size
    }

    func put(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count).copyMemory(from: source, byteCount: bytes.count)
        writeIndex += bytes.count
    }

    func put(_ bytes: [UInt8]) { bytes.withUnsafeBytes { put($0) } }

    func putText8(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            put(UInt8(utf8.count))
            put(UnsafeRawBufferPointer(utf8))
        }
    }

    /// Appends bytes that already form whole frames or records (for example from the ring).
    public func append(raw bytes: UnsafeRawBufferPointer) { put(bytes) }

    // MARK: Frames

    /// Where a frame started, so its length can be patched once its body is written. Positions
    /// are logical (index plus `shifted`), so compaction while the frame is open is harmless.
    public struct FrameMark: Sendable {
        let start: Int
        let countOffset: Int?
    }

    /// Starts a frame of `type`; `endFrame` patches the length prefix.
    public func beginFrame(_ type: FrameType) -> FrameMark {
        let start = writeIndex + shifted
        #if DEBUG
        openFrames += 1
        #endif
        put(UInt32(0))
        put(type.rawValue)
        return FrameMark(start: start, countOffset: nil)
    }

    public func endFrame(_ mark: FrameMark) {
        #if DEBUG
        assert(openFrames > 0, "endFrame without beginFrame")
        openFrames -= 1
        #endif
        let start = mark.start - shifted
        let length = UInt32(truncatingIfNeeded: writeIndex - start - Wire.lengthPrefixSize)
        storage.storeBytes(of: length.littleEndian, toByteOffset: start, as: UInt32.self)
    }

    /// Starts a PUBLISH or DELIVER frame; append records, then `endBatch(_:count:)`.
    public func beginBatch(_ type: FrameType) -> FrameMark {
        let mark = beginFrame(type)
        let countOffset = writeIndex + shifted
        put(UInt32(0))
        return FrameMark(start: mark.start, countOffset: countOffset)
    }

    public func endBatch(_ mark: FrameMark, count: Int) {
        if let offset = mark.countOffset {
            storage.storeBytes(of: UInt32(truncatingIfNeeded: count).littleEndian, toByteOffset: offset - shifted, as: UInt32.self)
        }
        endFrame(mark)
    }

    /// Bytes written since `mark` began (the frame's size so far, prefix included).
    public func size(since mark: FrameMark) -> Int { writeIndex + shifted - mark.start }
}
