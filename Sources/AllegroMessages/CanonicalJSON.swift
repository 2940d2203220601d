import AllegroWire

/// The messages' JSON form: one object, keys sorted, no spaces, non-ASCII text as is, so Swift and
/// Python (`json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":"))`) write the
/// same bytes. Reading is strict: unknown, missing and mistyped keys are errors naming the key.
enum CanonicalJSON {
    /// One member of an object, in text order.
    struct Member: Equatable {
        let key: String
        let value: Value
    }

    indirect enum Value: Equatable {
        case null, bool(Bool), string(String), integer(Int64), number(Double), array([Value]), object([Member])
        /// A number written with exactly one decimal (`98.5`, `100.0`): tenths.
        case tenths(Int)

        var text: String {
            switch self {
            case .null: "null"
            case let .bool(value): value ? "true" : "false"
            case let .string(value): CanonicalJSON.quote(value)
            case let .integer(value): String(value)
            case let .number(value): String(value)
            case let .tenths(value): "\(value / 10).\(value % 10)"
            case let .array(values): "[" + values.map(\.text).joined(separator: ",") + "]"
            case let .object(members): "{" + members.sorted { Array($0.key.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.key.unicodeScalars.map(\.value)) }
                .map { CanonicalJSON.quote($0.key) + ":" + $0.value.text }.joined(separator: ",") + "}"
            }
        }
    }

    /// An object being written.
    struct Object {
        private var members: [Member] = []
        mutating func add(_ key: String, _ value: Value) { members.append(Member(key: key, value: value)) }
        var value: Value { .object(members) }
        var text: String { value.text }
    }

    /// An object read, with typed access that names the key on error.
    struct Read {
        let fields: [String: Value]
        /// `telemetry.` for a nested object's keys.
        var prefix = ""

        /// The members as fields, refusing a key given twice (the first such key in the text).
        init(_ members: [Member], prefix: String = "") throws(MessageError) {
            var fields: [String: Value] = [:]
            for member in members {
                guard fields[member.key] == nil else { throw MessageError(prefix + member.key, "duplicate key") }
                fields[member.key] = member.value
            }
            self.fields = fields
            self.prefix = prefix
        }

        func string(_ key: String) throws(MessageError) -> String {
            guard case let .string(value)? = fields[key] else { throw MessageError(prefix + key, "expected a string") }
            return value
        }

        func strings(_ key: String) throws(MessageError) -> [String] {
            guard case let .array(values)? = fields[key] else { throw MessageError(prefix + key, "expected a list of strings") }
            var strings: [String] = []
            for value in values {
                guard case let .string(text) = value else { throw MessageError(prefix + key, "expected a list of strings") }
                strings.append(text)
            }
            return strings
        }

        /// A whole number: an integer, or a number whose value is one (`5.0`, `5e0`).
        func integer(_ key: String) throws(MessageError) -> Int64 {
            switch fields[key] {
            case let .integer(value)?: return value
            case let .number(value)?:
                if value.rounded() == value, value >= -9.223372036854775808e18, value < 9.223372036854775808e18 { return Int64(value) }
            default: break
            }
            throw MessageError(prefix + key, "expected a whole number")
        }

        /// A number, as tenths (98.5 is 985).
        /// A number as tenths (98.5 is 985): a whole number (`5`, `5.0`, as `integer` reads them)
        /// of magnitude below 2^40, or another finite number below 10^12, rounded half away from zero.
        func tenths(_ key: String) throws(MessageError) -> Int {
            if let whole = try? integer(key) {
                if abs(whole) < 1 << 40 { return Int(whole) * 10 }
            } else if case let .number(value)? = fields[key], value.isFinite, abs(value) < 1e12 {
                return Int((value * 10).rounded())
            }
            throw MessageError(prefix + key, "expected a number")
        }

        func object(_ key: String, keys: Set<String>) throws(MessageError) -> Read {
            guard case let .object(members)? = fields[key] else { throw MessageError(prefix + key, "expected an object") }
            let read = try Read(members, prefix: prefix + key + ".")
            try CanonicalJSON.checkKeys(read.fields, keys, prefix: read.prefix)
            return read
        }
    }

    /// Parses `text` as one object whose `message` is `message` and whose keys are exactly `keys`.
    static func object(_ text: String, message: String, keys: Set<String>) throws(MessageError) -> Read {
        let value: Value
        do { value = try StrictJSON.parse(text) } catch {
            throw MessageError("message", "not valid JSON")
        }
        guard case let .object(members) = value else { throw MessageError("message", "expected one JSON object") }
        let read = try Read(members)
        let kind = try read.string("message")
        guard kind == message else { throw MessageError("message", "\"\(kind)\", expected \"\(message)\"") }
        try checkKeys(read.fields, keys, prefix: "")
        return read
    }

    /// The `message` key of a JSON message, to choose its type.
    static func messageKind(_ text: String) throws(MessageError) -> String {
        guard let value = try? StrictJSON.parse(text), case let .object(members) = value else {
            throw MessageError("message", "not a JSON object")
        }
        return try Read(members).string("message")
    }

    static func checkKeys(_ fields: [String: Value], _ keys: Set<String>, prefix: String) throws(MessageError) {
        if let unknown = fields.keys.sorted().first(where: { !keys.contains($0) }) { throw MessageError(prefix + unknown, "unknown key") }
        if let missing = keys.sorted().first(where: { fields[$0] == nil }) { throw MessageError(prefix + missing, "missing") }
    }

    /// A JSON string as Python's json.dumps(ensure_ascii=False) writes it.
    static func quote(_ text: String) -> String { JSONObject.quote(text) }
}
