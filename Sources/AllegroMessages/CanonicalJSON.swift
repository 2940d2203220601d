import Foundation

/// The messages' JSON form: one object, keys sorted, no spaces, non-ASCII text as is, so Swift and
/// Python (`json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":"))`) write the
/// same bytes. Reading is strict: unknown, missing and mistyped keys are errors naming the key.
enum CanonicalJSON {
    indirect enum Value: Decodable, Equatable {
        case null, bool(Bool), string(String), integer(Int64), number(Double), array([Value]), object([String: Value])
        /// A number written with exactly one decimal (`98.5`, `100.0`): tenths.
        case tenths(Int)

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() { self = .null }
            else if let value = try? container.decode(Bool.self) { self = .bool(value) }
            else if let value = try? container.decode(String.self) { self = .string(value) }
            else if let value = try? container.decode(Int64.self) { self = .integer(value) }
            else if let value = try? container.decode(Double.self) { self = .number(value) }
            else if let value = try? container.decode([Value].self) { self = .array(value) }
            else { self = .object(try container.decode([String: Value].self)) }
        }

        var text: String {
            switch self {
            case .null: "null"
            case let .bool(value): value ? "true" : "false"
            case let .string(value): CanonicalJSON.quote(value)
            case let .integer(value): String(value)
            case let .number(value): String(value)
            case let .tenths(value): "\(value / 10).\(value % 10)"
            case let .array(values): "[" + values.map(\.text).joined(separator: ",") + "]"
            case let .object(fields): "{" + fields.keys.sorted().map { CanonicalJSON.quote($0) + ":" + (fields[$0]?.text ?? "null") }
                .joined(separator: ",") + "}"
            }
        }
    }

    /// An object being written.
    struct Object {
        private var fields: [String: Value] = [:]
        mutating func add(_ key: String, _ value: Value) { fields[key] = value }
        var text: String { Value.object(fields).text }
    }

    /// An object read, with typed access that names the key on error.
    struct Read {
        let fields: [String: Value]

        func string(_ key: String) throws(MessageError) -> String {
            guard case let .string(value)? = fields[key] else { throw MessageError(key, "expected a string") }
            return value
        }

        func strings(_ key: String) throws(MessageError) -> [String] {
            guard case let .array(values)? = fields[key] else { throw MessageError(key, "expected a list of strings") }
            var strings: [String] = []
            for value in values {
                guard case let .string(text) = value else { throw MessageError(key, "expected a list of strings") }
                strings.append(text)
            }
            return strings
        }

        func integer(_ key: String) throws(MessageError) -> Int64 {
            guard case let .integer(value)? = fields[key] else { throw MessageError(key, "expected a whole number") }
            return value
        }

        /// A number, as tenths (98.5 is 985).
        func tenths(_ key: String) throws(MessageError) -> Int {
            switch fields[key] {
            case let .integer(value)?: guard abs(value) < 1 << 40 else { break }; return Int(value) * 10
            case let .number(value)?: guard value.isFinite, abs(value) < 1e12 else { break }; return Int((value * 10).rounded())
            default: break
            }
            throw MessageError(key, "expected a number")
        }

        func object(_ key: String, keys: Set<String>) throws(MessageError) -> Read {
            guard case let .object(fields)? = fields[key] else { throw MessageError(key, "expected an object") }
            try CanonicalJSON.checkKeys(fields, keys, prefix: key + ".")
            return Read(fields: fields)
        }
    }

    /// Parses `text` as one object whose `message` is `message` and whose keys are exactly `keys`.
    static func object(_ text: String, message: String, keys: Set<String>) throws(MessageError) -> Read {
        let value: Value
        do { value = try JSONDecoder().decode(Value.self, from: Data(text.utf8)) } catch {
            throw MessageError("message", "not valid JSON")
        }
        guard case let .object(fields) = value else { throw MessageError("message", "expected one JSON object") }
        let read = Read(fields: fields)
        let kind = try read.string("message")
        guard kind == message else { throw MessageError("message", "\"\(kind)\", expected \"\(message)\"") }
        try checkKeys(fields, keys, prefix: "")
        return read
    }

    /// The `message` key of a JSON message, to choose its type.
    static func messageKind(_ text: String) throws(MessageError) -> String {
        guard let value = try? JSONDecoder().decode(Value.self, from: Data(text.utf8)), case let .object(fields) = value else {
            throw MessageError("message", "not a JSON object")
        }
        return try Read(fields: fields).string("message")
    }

    static func checkKeys(_ fields: [String: Value], _ keys: Set<String>, prefix: String) throws(MessageError) {
        if let unknown = fields.keys.sorted().first(where: { !keys.contains($0) }) { throw MessageError(prefix + unknown, "unknown key") }
        if let missing = keys.sorted().first(where: { fields[$0] == nil }) { throw MessageError(prefix + missing, "missing") }
    }

    /// A JSON string as Python's json.dumps(ensure_ascii=False) writes it.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let digits = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
