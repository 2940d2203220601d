/// A strict JSON reader (RFC 8259) for messages from the other side: UTF-8 text, no comments,
/// trailing commas, NaN or Infinity; a lone surrogate escape, a number that overflows a double or
/// nesting deeper than `maxDepth` is invalid. Objects keep their members in text order, so a key
/// given twice is seen (two readers that disagree on which one counts is a known smuggling hole).
struct StrictJSON {
    static let maxDepth = 32
    struct Invalid: Error {}

    private let bytes: [UInt8]
    private var index = 0

    static func parse(_ text: String) throws(Invalid) -> CanonicalJSON.Value {
        var reader = StrictJSON(bytes: Array(text.utf8))
        reader.skipSpace()
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == reader.bytes.count else { throw Invalid() }
        return value
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipSpace() {
        while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    private mutating func expect(_ literal: String) throws(Invalid) {
        for byte in literal.utf8 {
            guard peek == byte else { throw Invalid() }
            index += 1
        }
    }

    private mutating func value(depth: Int) throws(Invalid) -> CanonicalJSON.Value {
        guard depth < Self.maxDepth, let byte = peek else { throw Invalid() }
        switch byte {
        case UInt8(ascii: "{"):
            index += 1
            var members: [CanonicalJSON.Member] = []
            skipSpace()
            if peek == UInt8(ascii: "}") { index += 1; return .object(members) }
            while true {
                skipSpace()
                guard peek == UInt8(ascii: "\"") else { throw Invalid() }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                members.append(CanonicalJSON.Member(key: key, value: try value(depth: depth + 1)))
                skipSpace()
                if peek == UInt8(ascii: ",") { index += 1; continue }
                try expect("}")
                return .object(members)
            }
        case UInt8(ascii: "["):
            index += 1
            var values: [CanonicalJSON.Value] = []
            skipSpace()
            if peek == UInt8(ascii: "]") { index += 1; return .array(values) }
            while true {
                skipSpace()
                values.append(try value(depth: depth + 1))
                skipSpace()
                if peek == UInt8(ascii: ",") { index += 1; continue }
                try expect("]")
                return .array(values)
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default: return try number()
        }
    }

    private mutating func string() throws(Invalid) -> String {
        index += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() throws(Invalid) {
            guard !raw.isEmpty else { return }
            guard let text = String(validating: raw, as: UTF8.self) else { throw Invalid() }
            scalars.append(contentsOf: text.unicodeScalars)
            raw.removeAll()
        }
        while let byte = peek {
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                try flush()
                return String(scalars)
            case UInt8(ascii: "\\"):
                try flush()
                guard let escape = peek else { throw Invalid() }
                index += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800 ... 0xDBFF).contains(code) {
                        // A high surrogate must be followed by an escaped low one.
                        try expect("\\u")
                        let low = try hex4()
                        guard (0xDC00 ... 0xDFFF).contains(low) else { throw Invalid() }
                        code = 0x10000 + (code - 0xD800) << 10 + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw Invalid() }  // a lone low surrogate
                    scalars.append(scalar)
                default: throw Invalid()
                }
            default:
                guard byte >= 0x20 else { throw Invalid() }  // control characters must be escaped
                raw.append(byte)
            }
        }
        throw Invalid()
    }

    private mutating func hex4() throws(Invalid) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0 ..< 4 {
            guard let byte = peek, let digit = Self.hexDigit(byte) else { throw Invalid() }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private static func hexDigit(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a") ... UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A") ... UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// RFC 8259's number grammar; a whole-number text that fits is an integer, anything else a double.
    private mutating func number() throws(Invalid) -> CanonicalJSON.Value {
        let start = index
        func digits() -> Int {
            var count = 0
            while let byte = peek, (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(byte) { index += 1; count += 1 }
            return count
        }
        if peek == UInt8(ascii: "-") { index += 1 }
        let leading = index
        guard digits() > 0 else { throw Invalid() }
        if bytes[leading] == UInt8(ascii: "0") && index - leading > 1 { throw Invalid() }  // no leading zeros
        var whole = true
        if peek == UInt8(ascii: ".") {
            index += 1
            whole = false
            guard digits() > 0 else { throw Invalid() }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            whole = false
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw Invalid() }
        }
        let text = String(decoding: bytes[start ..< index], as: UTF8.self)
        if whole, let value = Int64(text) { return .integer(value) }
        guard let value = Double(text), value.isFinite else { throw Invalid() }
        return .number(value)
    }
}
