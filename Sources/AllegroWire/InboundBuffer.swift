/// The receive side of one connection: bytes arrive in any chunking (one at a time included)
/// and come out as whole frames.
///
/// Guarantees:
/// - Owns one contiguous allocation that starts small and grows only to hold a frame whose
///   declared length has already passed the limit check, so an untrusted length never makes it
///   allocate more than `limits.maxFrameLength` plus the 4-byte prefix.
/// - A frame returned by `next()` views this buffer and stays valid until the next call to
///   `writableSpace(minimum:)`, `append(_:)` or `decodeAll(_:_:)`, which may move bytes.
/// - After a thrown `WireError` framing is lost: the owner must close the connection.
public final class InboundBuffer {
    private var storage: UnsafeMutableRawBufferPointer
    private var readIndex = 0
    private var writeIndex = 0
    /// Limits applied to the next frame; a relay tightens them after the handshake.
    public var limits: DecodeLimits
    /// Bytes consumed as whole frames since creation: the stream offset of the next frame.
    public private(set) var consumedTotal = 0

    public init(limits: DecodeLimits, initialCapacity: Int = 16 * 1024) {
        self.limits = limits
        storage = .allocate(byteCount: max(initialCapacity, 64), alignment: 16)
    }

    deinit { storage.deallocate() }

    /// Bytes received but not yet returned as frames.
    public var bufferedCount: Int { writeIndex - readIndex }

    /// Current allocation size (for memory accounting).
    public var capacity: Int { storage.count }

    /// Space to receive into (for example with `read(2)`), at least `minimum` bytes when the
    /// limits allow; call `didWrite(_:)` with what was written. Invalidates earlier frames.
    public func writableSpace(minimum: Int = 1) -> UnsafeMutableRawBufferPointer {
        if storage.count - writeIndex < minimum {
            compact()
            if storage.count - writeIndex < minimum { grow(to: writeIndex + minimum) }
        }
        return UnsafeMutableRawBufferPointer(rebasing: storage[writeIndex...])
    }

    /// Records that `count` bytes were written into the space `writableSpace` returned.
    public func didWrite(_ count: Int) {
        writeIndex = min(writeIndex + max(count, 0), storage.count)
    }

    /// The next whole frame, or nil when more bytes are needed. Throws at the first byte that
    /// makes the stream invalid, before waiting for the rest of a frame that cannot be valid.
    public func next() throws(WireError) -> Frame? {
        let available = writeIndex - readIndex
        guard available >= Wire.lengthPrefixSize else { return nil }
        let bytes = UnsafeRawBufferPointer(storage)
        let length = Int(bytes.le(UInt32.self, at: readIndex))
        guard length >= 1 else { throw .emptyFrame }
        guard length <= limits.maxFrameLength else { throw .frameTooLarge(length: length, limit: limits.maxFrameLength) }
        guard available > Wire.lengthPrefixSize else { return nil }
        let typeByte = bytes[readIndex + Wire.lengthPrefixSize]
        guard let type = FrameType(rawValue: typeByte) else { throw .unknownFrameType(typeByte) }
        let total = Wire.lengthPrefixSize + length
        guard available >= total else {
            if storage.count - readIndex < total {
                compact()
                if storage.count < total { grow(to: total) }
            }
            return nil
        }
        let bodyStart = readIndex + Wire.lengthPrefixSize + 1
        let body = UnsafeRawBufferPointer(rebasing: bytes[bodyStart ..< readIndex + total])
        let frame = try FrameDecoder.decode(type: type, body: body, limits: limits)
        // The frame views `storage`; moving the indices moves no bytes, so it stays valid.
        readIndex += total
        consumedTotal += total
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
        return frame
    }

    /// Call at end of stream: throws `.truncated` when a partial frame is left over.
    public func finish() throws(WireError) {
        let available = writeIndex - readIndex
        guard available > 0 else { return }
        var need = Wire.lengthPrefixSize
        if available >= Wire.lengthPrefixSize {
            need += Int(UnsafeRawBufferPointer(storage).le(UInt32.self, at: readIndex))
        }
        throw .truncated(have: available, need: need)
    }

    /// Feeds `chunk` through the buffer, calling `body` with each whole frame as it completes.
    /// Convenient for tools and tests; the relay uses `writableSpace`/`didWrite`/`next` directly.
    public func decodeAll(_ chunk: UnsafeRawBufferPointer, _ body: (Frame) -> Void) throws(WireError) {
        var offset = 0
        repeat {
            let space = writableSpace(minimum: 1)
            let n = min(space.count, chunk.count - offset)
            if n > 0, let source = chunk.baseAddress {
                space.baseAddress?.copyMemory(from: source + offset, byteCount: n)
            }
            didWrite(n)
            offset += n
            while let frame = try next() { body(frame) }
        } while offset < chunk.count
    }

    private func compact() {
        guard readIndex > 0 else { return }
        let live = writeIndex - readIndex
        if live > 0, let base = storage.baseAddress {
            (base).copyMemory(from: base + readIndex, byteCount: live)
        }
        readIndex = 0
        writeIndex = live
    }

    private func grow(to needed: Int) {
        var size = storage.count
        while size < needed { size *= 2 }
        size = min(size, max(needed, Wire.lengthPrefixSize + limits.maxFrameLength))
        let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        let live = writeIndex - readIndex
        if live > 0, let base = storage.baseAddress {
            larger.baseAddress?.copyMemory(from: base + readIndex, byteCount: live)
        }
        storage.deallocate()
        storage = larger
        readIndex = 0
        writeIndex = live
    }
}
