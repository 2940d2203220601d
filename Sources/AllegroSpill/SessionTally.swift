import AllegroWire

/// Per-session counts the spill thread gathers from the records it writes, off the I/O thread,
/// saved to SQLite with each state save. Records without a session id are not counted.
///
/// A run of records with the same session, kind and producer updates one entry in place,
/// comparing bytes only; the dictionary is touched (and its key allocated) when the run changes.
public struct SessionTally {
    private struct Key: Hashable {
        var session: [UInt8]
        var kind: [UInt8]
        var producer: [UInt8]
    }

    public init() {}

    private var totals: [Key: SessionDelta] = [:]
    private var recentKey: Key?
    private var recent: SessionDelta?
    private var recentIsError = false

    /// Counts one record (in DELIVER layout, its size already checked).
    public mutating func note(_ record: UnsafeRawBufferPointer) {
        guard let base = record.baseAddress else { return }
        let (session, kind) = DeliveredRecordLayout.sessionAndKind(of: record)
        guard !session.isEmpty else { return }
        let producer = DeliveredRecordLayout.producer(of: record)
        if recentKey.map({ $0.session.elementsEqual(session) && $0.kind.elementsEqual(kind) && $0.producer.elementsEqual(producer) }) != true {
            flushRecent()
            let key = Key(session: Array(session), kind: Array(kind), producer: Array(producer))
            recentKey = key
            recent = totals[key] ?? SessionDelta(session: String(decoding: session, as: UTF8.self),
                                                 kind: String(decoding: kind, as: UTF8.self),
                                                 producer: String(decoding: producer, as: UTF8.self))
            recentIsError = Self.namesError(kind)
        }
        let ingest = DeliveredRecordLayout.ingestNanos(at: base)
        recent?.records += 1
        recent?.bytes += UInt64(DeliveredRecordLayout.payloadLength(at: base))
        if recentIsError { recent?.errors += 1 }
        if let first = recent?.firstNanos, ingest < first { recent?.firstNanos = ingest }
        if let last = recent?.lastNanos, ingest > last { recent?.lastNanos = ingest }
    }

    /// Everything counted since the last call.
    public mutating func take() -> [SessionDelta] {
        flushRecent()
        defer { totals.removeAll(keepingCapacity: true) }
        return Array(totals.values)
    }

    private mutating func flushRecent() {
        if let key = recentKey, let delta = recent { totals[key] = delta }
        recentKey = nil
        recent = nil
    }

    private static let errorWord = Array("error".utf8)

    /// An event kind such as `error`, `tool_error` or `ApiError` (ASCII, any case).
    static func namesError(_ kind: UnsafeRawBufferPointer) -> Bool {
        let word = errorWord
        guard kind.count >= word.count else { return false }
        for start in 0 ... kind.count - word.count {
            var matched = true
            for offset in 0 ..< word.count where kind[start + offset] | 0x20 != word[offset] {
                matched = false
                break
            }
            if matched { return true }
        }
        return false
    }
}

/// Counts for one (session, kind, producer) gathered from spilled records since the last save.
public struct SessionDelta: Sendable, Equatable {
    public var session: String
    public var kind: String
    public var producer: String
    public var records: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Records whose kind names an error (contains "error").
    public var errors: UInt64 = 0
    public var firstNanos: UInt64 = .max
    public var lastNanos: UInt64 = 0

    public init(session: String, kind: String, producer: String) {
        self.session = session
        self.kind = kind
        self.producer = producer
    }
}

extension SessionDelta {
    /// Adds `other`'s counts and widens the time range to cover it.
    public mutating func merge(_ other: SessionDelta) {
        records += other.records
        bytes += other.bytes
        errors += other.errors
        firstNanos = min(firstNanos, other.firstNanos)
        lastNanos = max(lastNanos, other.lastNanos)
    }
}
