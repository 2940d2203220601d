import Foundation

/// Reads spill segment files the way PROTOCOL/SPILL.md describes them, independently of the
/// relay's own reader, so tests can find blocks to damage and sum up sizes.
public enum SpillFiles {
    public struct Block {
        public var offset: Int
        public var firstSequence: UInt64
        public var records: Int
        public var uncompressed: Int
        public var compressed: Int
        public var total: Int { 64 + compressed }
    }

    public static func segments(in data: URL) throws -> [URL] {
        let spill = data.appendingPathComponent("spill")
        return try FileManager.default.contentsOfDirectory(atPath: spill.path).filter { $0.hasSuffix(".seg") }.sorted()
            .map { spill.appendingPathComponent($0) }
    }

    public static func blocks(of segment: URL) throws -> [Block] {
        let bytes = [UInt8](try Data(contentsOf: segment))
        func u32(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24 }
        func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
        var blocks: [Block] = []
        var offset = 16
        while offset + 64 <= bytes.count, u32(offset) == 0x4253_4C41 {
            let block = Block(offset: offset, firstSequence: u64(offset + 8), records: u32(offset + 16),
                              uncompressed: u32(offset + 20), compressed: u32(offset + 24))
            guard offset + block.total <= bytes.count else { break }
            blocks.append(block)
            offset += block.total
        }
        return blocks
    }
}
