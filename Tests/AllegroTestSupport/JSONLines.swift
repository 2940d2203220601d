import Foundation

/// Reads `allegro tail --format jsonl` output quickly enough for a million lines in a debug
/// build: the fields the tests check, found by position rather than by a JSON parser.
public struct TailLine {
    public var relaySequence: UInt64
    public var producer: String
    public var payload: String

    /// Every line of `data`. Lines that do not have the expected shape come back as nil entries.
    public static func parse(_ data: Data) -> [TailLine?] {
        var lines: [TailLine?] = []
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let bytes = raw.bindMemory(to: UInt8.self)
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != 0x0A { end += 1 }
                lines.append(parseLine(UnsafeBufferPointer(rebasing: bytes[start ..< end])))
                start = end + 1
            }
        }
        return lines
    }

    private static let sequenceKey = Array(#"{"relay_seq":"#.utf8)
    private static let producerKey = Array(#""producer":""#.utf8)
    private static let payloadKey = Array(#""payload":""#.utf8)

    private static func parseLine(_ line: UnsafeBufferPointer<UInt8>) -> TailLine? {
        guard line.count > sequenceKey.count, Array(line[0 ..< sequenceKey.count]) == sequenceKey else { return nil }
        var index = sequenceKey.count
        var sequence: UInt64 = 0
        while index < line.count, line[index] >= 0x30, line[index] <= 0x39 {
            sequence = sequence * 10 + UInt64(line[index] - 0x30)
            index += 1
        }
        guard let producer = string(after: producerKey, in: line, from: index),
              let payload = string(after: payloadKey, in: line, from: producer.end) else { return nil }
        return TailLine(relaySequence: sequence, producer: producer.text, payload: payload.text)
    }

    /// The JSON string (without escapes) that follows `key` at or after `from`.
    private static func string(after key: [UInt8], in line: UnsafeBufferPointer<UInt8>, from: Int) -> (text: String, end: Int)? {
        var index = from
        while index + key.count <= line.count {
            if line[index] == key[0] && Array(line[index ..< index + key.count]) == key {
                let valueStart = index + key.count
                var valueEnd = valueStart
                while valueEnd < line.count && line[valueEnd] != 0x22 { valueEnd += 1 }
                return (String(decoding: UnsafeBufferPointer(rebasing: line[valueStart ..< valueEnd]), as: UTF8.self), valueEnd)
            }
            index += 1
        }
        return nil
    }
}
