/// Renders a decoded frame as one line of JSON: the form `allegro protocol decode` prints and
/// the test vectors in `protocol/vectors/` describe. Tokens are shown by length only.
public enum FrameJSON {
    public static func render(_ frame: Frame) -> String {
        var json = JSONObject()
        json.add("type", frame.type.name)
        switch frame {
        case let .hello(hello):
            json.add("min_version", hello.minVersion)
            json.add("max_version", hello.maxVersion)
            json.add("role", hello.role.name)
            json.add("client_id", hello.clientID.string)
            json.add("token_length", hello.token.count)
        case let .welcome(welcome):
            json.add("version", welcome.version)
            json.add("max_frame", welcome.maxFrameLength)
            json.add("max_batch", welcome.maxBatchRecords)
            json.add("heartbeat_ms", welcome.heartbeatMillis)
            json.add("idle_timeout_ms", welcome.idleTimeoutMillis)
            json.add("relay_id", welcome.relayID)
        case let .publish(batch):
            json.add("count", batch.count)
            json.addRaw("records", "[" + batch.map(render(published:)).joined(separator: ",") + "]")
        case let .ack(through), let .commit(through), let .committed(through):
            json.add("through", through)
        case let .subscribe(subscribe):
            json.add("start", subscribe.start.name)
            if case let .sequence(sequence) = subscribe.start { json.add("sequence", sequence) }
            json.add("credit", subscribe.credit)
            json.add("name", subscribe.name.string)
            if subscribe.live { json.add("live", true) }
        case let .subscribed(subscribed):
            json.add("first_sequence", subscribed.firstSequence)
            json.add("head_sequence", subscribed.headSequence)
            json.add("committed", subscribed.committed)
        case let .deliver(batch):
            json.add("count", batch.count)
            json.addRaw("records", "[" + batch.map(render(delivered:)).joined(separator: ",") + "]")
        case let .credit(credit):
            json.add("credit", credit)
        case let .skip(first, last):
            json.add("first", first)
            json.add("last", last)
        case let .ping(nonce), let .pong(nonce):
            json.add("nonce", nonce)
        case .goodbye:
            break
        case let .error(code, message):
            json.add("code", code)
            json.add("name", ErrorCode(rawValue: code)?.name ?? "UNKNOWN")
            json.add("message", message.string)
        }
        return json.text
    }

    public static func render(published record: PublishedRecord) -> String {
        var json = JSONObject()
        json.add("producer_seq", record.producerSequence)
        json.add("event_time_ns", record.eventTimeNanos)
        json.add("session", record.session.string)
        json.add("kind", record.kind.string)
        json.add("content_type", record.contentType.string)
        json.add("payload_hex", hex(record.payload))
        return json.text
    }

    public static func render(delivered record: DeliveredRecord) -> String {
        var json = JSONObject()
        addHeader(of: record, to: &json)
        json.add("payload_hex", hex(record.payload))
        return json.text
    }

    /// A delivered record's fields other than the payload, in protocol order.
    public static func addHeader(of record: DeliveredRecord, to json: inout JSONObject) {
        json.add("relay_seq", record.relaySequence)
        json.add("ingest_ns", record.ingestNanos)
        json.add("producer", record.producer.string)
        json.add("producer_seq", record.producerSequence)
        json.add("event_time_ns", record.eventTimeNanos)
        json.add("session", record.session.string)
        json.add("kind", record.kind.string)
        json.add("content_type", record.contentType.string)
    }

    /// Lower-case hexadecimal of the bytes.
    public static func hex(_ view: ByteView) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(view.count * 2)
        for byte in view.bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A JSON object built field by field, keeping field order.
public struct JSONObject {
    private var fields: [String] = []

    public init() {}

    public mutating func add(_ key: String, _ value: String) {
        fields.append(Self.quote(key) + ":" + Self.quote(value))
    }

    public mutating func add<T: BinaryInteger>(_ key: String, _ value: T) {
        fields.append(Self.quote(key) + ":" + String(value))
    }

    public mutating func add(_ key: String, _ value: Bool) {
        fields.append(Self.quote(key) + ":" + (value ? "true" : "false"))
    }

    /// Adds a value that is already JSON text.
    public mutating func addRaw(_ key: String, _ json: String) {
        fields.append(Self.quote(key) + ":" + json)
    }

    public var text: String { "{" + fields.joined(separator: ",") + "}" }

    /// A JSON string literal for `text`: the short escapes where JSON has one, `\u00XX` for the
    /// other control characters, everything else as is (byte-equal to Python's
    /// `json.dumps(text, ensure_ascii=False)`).
    public static func quote(_ text: String) -> String {
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
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
