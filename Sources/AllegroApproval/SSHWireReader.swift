/// Reads the SSH wire encoding (RFC 4251 section 5) from untrusted bytes: big-endian uint32 and
/// length-prefixed strings. Every length is checked against what is left before anything is
/// sliced, so a length past the end is a refusal naming `what`, never a trap or an allocation.
struct SSHWireReader {
    private let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func uint32(_ what: String) throws(ApprovalRefusal) -> UInt32 {
        guard bytes.count - offset >= 4 else { throw ApprovalRefusal(.blob, "\(what): the signature ends early") }
        let value = bytes[offset ..< offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        offset += 4
        return value
    }

    /// A uint32 length and that many bytes.
    mutating func string(_ what: String) throws(ApprovalRefusal) -> ArraySlice<UInt8> {
        let length = Int(try uint32(what))
        guard bytes.count - offset >= length else {
            throw ApprovalRefusal(.blob, "\(what): a length of \(length) bytes goes past the end (\(bytes.count - offset) left)")
        }
        defer { offset += length }
        return bytes[offset ..< offset + length]
    }

    /// Exactly `count` raw bytes.
    mutating func raw(_ count: Int, _ what: String) throws(ApprovalRefusal) -> ArraySlice<UInt8> {
        guard bytes.count - offset >= count else { throw ApprovalRefusal(.blob, "\(what): the signature ends early") }
        defer { offset += count }
        return bytes[offset ..< offset + count]
    }
}

/// Appends the SSH wire encoding of a string (uint32 length, then the bytes).
func appendSSHString<C: Collection>(_ bytes: C, to output: inout [UInt8]) where C.Element == UInt8 {
    let count = UInt32(bytes.count)
    output += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
    output += bytes
}
