/// A strict base64 decoder (RFC 4648 section 4, padded) for untrusted armor: any byte outside
/// the alphabet, padding anywhere but the end, or a length that is not a multiple of four is a
/// refusal. Output is at most 3/4 of the input, which the caller has already bounded.
enum Base64 {
    private static let table: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (index, character) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(character)] = Int8(index)
        }
        return table
    }()

    static func decode(_ text: some Collection<UInt8>) throws(ApprovalRefusal) -> [UInt8] {
        let input = Array(text)
        guard !input.isEmpty, input.count % 4 == 0 else {
            throw ApprovalRefusal(.base64, "\(input.count) characters is not a whole number of 4-character groups")
        }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            var values: [Int] = []
            for position in index ..< index + 4 {
                let character = input[position]
                if character == UInt8(ascii: "=") {
                    // Padding: only in the last group, only at its end.
                    guard index + 4 == input.count, position >= index + 2,
                          input[position...].allSatisfy({ $0 == UInt8(ascii: "=") }) else {
                        throw ApprovalRefusal(.base64, "padding at character \(position + 1), before the end")
                    }
                    break
                }
                let value = table[Int(character)]
                guard value >= 0 else {
                    throw ApprovalRefusal(.base64, "character \(position + 1) (byte 0x\(String(character, radix: 16))) is not base64")
                }
                values.append(Int(value))
            }
            // Canonical: the bits a padded group does not use are zero (one text per blob).
            if values.count == 2 && values[1] & 0x0F != 0 || values.count == 3 && values[2] & 0x03 != 0 {
                throw ApprovalRefusal(.base64, "the last group before the padding has bits set that carry nothing")
            }
            output.append(UInt8((values[0] << 2 | values[1] >> 4) & 0xFF))
            if values.count > 2 { output.append(UInt8((values[1] << 4 | values[2] >> 2) & 0xFF)) }
            if values.count > 3 { output.append(UInt8((values[2] << 6 | values[3]) & 0xFF)) }
            index += 4
        }
        return output
    }

    static func encode(_ bytes: some Collection<UInt8>) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        let input = Array(bytes)
        var output: [UInt8] = []
        var index = 0
        while index < input.count {
            let chunk = input[index ..< min(index + 3, input.count)]
            let value = chunk.enumerated().reduce(0) { $0 | Int($1.element) << (16 - 8 * $1.offset) }
            for position in 0 ..< 4 {
                output.append(position <= chunk.count ? alphabet[value >> (18 - 6 * position) & 63] : UInt8(ascii: "="))
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
