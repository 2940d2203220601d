/// A non-owning view of bytes inside a buffer owned elsewhere (usually an `InboundBuffer`).
///
/// Guarantees: reading never copies and never traps; the view is valid only until the owner's
/// buffer is next written or compacted, so copy out (`array`, `string`) anything kept longer.
public struct ByteView: Equatable, CustomStringConvertible {
    public let bytes: UnsafeRawBufferPointer

    @inlinable public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inlinable public var count: Int { bytes.count }
    @inlinable public var isEmpty: Bool { bytes.isEmpty }

    /// A copy of the bytes.
    public var array: [UInt8] { Array(bytes) }

    /// The bytes decoded as UTF-8 (the decoder has already validated UTF-8 where the protocol requires it).
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    public var description: String { string }

    public static func == (lhs: ByteView, rhs: ByteView) -> Bool {
        lhs.bytes.count == rhs.bytes.count && lhs.bytes.elementsEqual(rhs.bytes)
    }

    /// Compares with a Swift string's UTF-8 without allocating.
    public func equals(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { $0.count == bytes.count && $0.elementsEqual(bytes) }
    }
}

extension UnsafeRawBufferPointer {
    /// Reads a little-endian integer at `offset`. The caller has checked `offset + size <= count`.
    @inlinable func le<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// A sub-view; the caller has checked the bounds.
    @inlinable func view(_ offset: Int, _ count: Int) -> ByteView {
        ByteView(UnsafeRawBufferPointer(rebasing: self[offset ..< offset + count]))
    }
}
