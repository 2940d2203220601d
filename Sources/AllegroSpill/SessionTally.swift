import AllegroWire

/// Per-session counts the spill thread gathers from the records it writes, off the I/O thread,
/// saved to SQLite with each state save. Records without a session id are not counted.
///
/// A run of records with the same session, kind and producer updates one entry in place,
/// comparing bytes only. When the run changes, the entry is looked up by a key built in a
/// reused buffer, so switching between known sessions (64 Hermes sessions interleaved)
/// allocates nothing. An entry (its key and its strings) stays from one `take()` to the next
/// while its session has records in every period, so a steady set of sessions allocates only
/// the array each `take()` returns; an entry with none in a period is dropped at its end.
public struct SessionTally {
    public init() {}

    /// Keyed by `key(...)`'s bytes: each field's length (one byte: the short fields are at most
    /// 255 bytes, PROTOCOL.md) then its bytes, for session, kind and producer.
    private var totals: [[UInt8]: SessionDelta] = [:]
    /// The key of the run in `recent`, or empty for none.
    private var recentKey: [UInt8] = []
    private var recent: SessionDelta?
    private var recentIsError = false
    /// Where keys are built for lookups; its capacity is kept.
    private var scratch: [UInt8] = []
    /// Keys of entries with no records in the period `take()` ends (capacity kept).
    private var idle: [[UInt8]] = []

    /// Counts one record (in DELIVER layout, its size already checked).
    public mutating func note(_ record: UnsafeRawBufferPointer) {
        guard let base = record.baseAddress else { return }
        let (session, kind) = DeliveredRecordLayout.sessionAndKind(of: record)
        guard !session.isEmpty else { return }
        let producer = DeliveredRecordLayout.producer(of: record)
        if recent == nil || !Self.key(recentKey, is: session, kind, producer) {
            flushRecent()
            scratch.removeAll(keepingCapacity: true)
            Self.appendField(session, to: &scratch)
            Self.appendField(kind, to: &scratch)
            Self.appendField(producer, to: &scratch)
            if let index = totals.index(forKey: scratch) {
                // The stored key itself, so `scratch` stays unshared and is reused as it is.
                recentKey = totals[index].key
                recent = totals[index].value
            } else {
                // A key new since the last take(): its one allocation, stored by flushRecent().
                recentKey = scratch.withUnsafeBytes { Array($0) }
                recent = SessionDelta(session: String(decoding: session, as: UTF8.self),
                                      kind: String(decoding: kind, as: UTF8.self),
                                      producer: String(decoding: producer, as: UTF8.self))
            }
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
        var counted: [SessionDelta] = []
        counted.reserveCapacity(totals.count)
        // A plain index walk: `indices` would hold a copy of the dictionary, and clearing a
        // value in place would then copy its storage.
        var index = totals.startIndex
        while index != totals.endIndex {
            let delta = totals.values[index]
            if delta.records == 0 {
                idle.append(totals.keys[index])
            } else {
                counted.append(delta)
                totals.values[index].clearCounts()
            }
            totals.formIndex(after: &index)
        }
        for key in idle { totals[key] = nil }
        idle.removeAll(keepingCapacity: true)
        return counted
    }

    private mutating func flushRecent() {
        if let delta = recent { totals[recentKey] = delta }
        recent = nil
    }

    private static func appendField(_ field: UnsafeRawBufferPointer, to key: inout [UInt8]) {
        key.append(UInt8(truncatingIfNeeded: field.count))
        key.append(contentsOf: field)
    }

    /// Whether `key` (as built by `note`) is these three fields, comparing bytes in place.
    private static func key(_ key: [UInt8], is session: UnsafeRawBufferPointer, _ kind: UnsafeRawBufferPointer,
                            _ producer: UnsafeRawBufferPointer) -> Bool {
        guard key.count == 3 + session.count + kind.count + producer.count else { return false }
        return key.withUnsafeBytes { stored in
            var offset = 0
            func next(_ field: UnsafeRawBufferPointer) -> Bool {
                defer { offset += 1 + field.count }
                return stored[offset] == UInt8(truncatingIfNeeded: field.count)
                    && ByteCompare.equal(UnsafeRawBufferPointer(rebasing: stored[offset + 1 ..< offset + 1 + field.count]), field)
            }
            return next(session) && next(kind) && next(producer)
        }
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
    /// Zero counts and an empty time range, names kept.
    mutating func clearCounts() {
        records = 0
        bytes = 0
        errors = 0
        firstNanos = .max
        lastNanos = 0
    }

    /// Adds `other`'s counts and widens the time range to cover it.
    public mutating func merge(_ other: SessionDelta) {
        records += other.records
        bytes += other.bytes
        errors += other.errors
        firstNanos = min(firstNanos, other.firstNanos)
        lastNanos = max(lastNanos, other.lastNanos)
    }
}
