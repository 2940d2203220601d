import AllegroPosix
import ArgumentParser

/// How `allegro push` cuts standard input into records.
enum InputMode: String, ExpressibleByArgument, CaseIterable {
    /// One record per line: LF ends a line, a CR just before it is dropped (CRLF text).
    case lines
    /// Each record is a u32 little-endian byte count (as every integer of the wire protocol)
    /// and then that many bytes: binary data.
    case lengthPrefixed = "length-prefixed"
    /// All of standard input is one record.
    case whole
}

/// Input that cannot be cut into records, with where it went wrong.
struct BadInput: Error, CustomStringConvertible {
    var description: String
}

/// Reads standard input in large chunks and hands out records (views into its buffer, valid
/// during the call) with no copy per record. The buffer grows only for a record longer than it,
/// and never past twice `maxRecordBytes`: a longer record is handed out cut short (the body is
/// told so), for the caller's size check to refuse, and reading ends.
struct InputRecords {
    let mode: InputMode
    /// The most a record may be; past it, reading that record stops.
    let maxRecordBytes: Int
    private let input = InputReader()

    init(mode: InputMode, maxRecordBytes: Int) {
        self.mode = mode
        self.maxRecordBytes = max(maxRecordBytes, 1)
    }

    /// Calls `body` with each record, and whether it was cut short (it is longer than that).
    func forEach(_ body: (_ record: UnsafeRawBufferPointer, _ cutShort: Bool) throws -> Void) throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var filled = 0
        var recordNumber = 0
        while true {
            if filled == buffer.count {
                // One record fills the buffer: grow, up to what a record may be plus one read.
                guard buffer.count <= maxRecordBytes else {
                    try buffer.withUnsafeBytes { raw in try body(UnsafeRawBufferPointer(rebasing: raw[..<filled]), true) }
                    return
                }
                buffer += [UInt8](repeating: 0, count: buffer.count)
            }
            let n = try buffer.withUnsafeMutableBytes { raw in
                try input.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
            }
            let atEnd = n == 0
            filled += n
            let consumed = try buffer.withUnsafeBytes { raw -> Int in
                try cut(UnsafeRawBufferPointer(rebasing: raw[..<filled]), atEnd: atEnd, number: &recordNumber, body)
            }
            if consumed > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    if let base = raw.baseAddress, filled > consumed {
                        base.copyMemory(from: base + consumed, byteCount: filled - consumed)
                    }
                }
                filled -= consumed
            }
            if atEnd { return }
        }
    }

    /// Hands out every whole record in `bytes`; returns how many bytes they took.
    private func cut(_ bytes: UnsafeRawBufferPointer, atEnd: Bool, number: inout Int,
                     _ body: (UnsafeRawBufferPointer, Bool) throws -> Void) throws -> Int {
        var start = 0
        switch mode {
        case .lines:
            while let newline = bytes[start...].firstIndex(of: 0x0A) {
                let end = newline > start && bytes[newline - 1] == 0x0D ? newline - 1 : newline
                try body(UnsafeRawBufferPointer(rebasing: bytes[start ..< end]), false)
                start = newline + 1
            }
            if atEnd && start < bytes.count {
                try body(UnsafeRawBufferPointer(rebasing: bytes[start...]), false)
                start = bytes.count
            }
        case .lengthPrefixed:
            while bytes.count - start >= 4 {
                let length = bytes[start ..< start + 4].reversed().reduce(0) { $0 << 8 | Int($1) }
                if length > maxRecordBytes {
                    throw BadInput(description: "record \(number + 1) declares \(length) bytes, more than the relay's max_frame_bytes (\(maxRecordBytes))")
                }
                guard bytes.count - start - 4 >= length else { break }
                number += 1
                try body(UnsafeRawBufferPointer(rebasing: bytes[start + 4 ..< start + 4 + length]), false)
                start += 4 + length
            }
            if atEnd && start < bytes.count {
                let have = bytes.count - start
                throw BadInput(description: have < 4
                    ? "standard input ends inside the length of record \(number + 1) (\(have) of 4 bytes)"
                    : "standard input ends inside record \(number + 1) (\(have - 4) of its declared bytes present)")
            }
        case .whole:
            if atEnd {
                try body(bytes, false)
                start = bytes.count
            }
        }
        return start
    }
}
