/// Reads the fields of one frame body in order, checking each against the end of the frame.
/// Every failure is a typed `WireError`; nothing traps and nothing allocates.
struct BodyReader {
    let bytes: UnsafeRawBufferPointer
    let frame: FrameType
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer, frame: FrameType) {
        self.bytes = bytes
        self.frame = frame
    }

    var remaining: Int { bytes.count - offset }

    mutating func integer<T: FixedWidthInteger>(_: T.Type, _ field: String) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .fieldOverrun(frame: frame, field: field) }
        let value = bytes.le(T.self, at: offset)
        offset += size
        return value
    }

    mutating func raw(_ count: Int, _ field: String) throws(WireError) -> ByteView {
        guard count <= remaining else { throw .fieldOverrun(frame: frame, field: field) }
        let view = bytes.view(offset, count)
        offset += count
        return view
    }

    /// A UTF-8 text field of `count` bytes.
    mutating func text(_ count: Int, _ field: String, allowEmpty: Bool = true) throws(WireError) -> ByteView {
        let view = try raw(count, field)
        if !allowEmpty && view.isEmpty { throw .invalidValue(frame: frame, field: field, reason: "must not be empty") }
        guard UTF8Validation.isValid(view.bytes) else {
            throw .invalidValue(frame: frame, field: field, reason: "not valid UTF-8")
        }
        return view
    }

    /// A text field preceded by a one-byte length.
    mutating func text8(_ field: String, allowEmpty: Bool = true) throws(WireError) -> ByteView {
        let count = try integer(UInt8.self, field + "_length")
        return try text(Int(count), field, allowEmpty: allowEmpty)
    }

    /// A zero-valued reserved field.
    mutating func reserved<T: FixedWidthInteger>(_: T.Type, _ field: String) throws(WireError) {
        guard try integer(T.self, field) == 0 else {
            throw .invalidValue(frame: frame, field: field, reason: "reserved, must be 0")
        }
    }

    func finish() throws(WireError) {
        if remaining != 0 { throw .trailingBytes(frame: frame, count: remaining) }
    }

    func invalid(_ field: String, _ reason: String) -> WireError {
        .invalidValue(frame: frame, field: field, reason: reason)
    }
}
