import Glibc

/// Byte-string equality by `memcmp`, for the spill thread's per-record checks: the generic
/// `elementsEqual` between an array and a raw buffer was 5% of that thread (BENCHMARKS.md,
/// "Codecs").
enum ByteCompare {
    static func equal(_ id: [UInt8], _ bytes: UnsafeRawBufferPointer) -> Bool {
        id.withUnsafeBytes { equal($0, bytes) }
    }

    static func equal(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
        guard left.count == right.count else { return false }
        guard left.count > 0, let a = left.baseAddress, let b = right.baseAddress else { return true }
        return memcmp(a, b, left.count) == 0
    }
}
