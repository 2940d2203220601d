import AllegroWire

/// The records a producer has published but the relay has not acknowledged, in PUBLISH layout,
/// oldest first, so a batch to (re)send is one contiguous range of bytes.
///
/// Guarantees: a record stays until `acknowledge(through:)` covers its sequence; memory grows
/// only to the most held unacknowledged at once (the producer's window bounds it).
struct UnackedRecords {
    private let buffer = OutboundBuffer(initialCapacity: 256 * 1024)
    /// Per record: its producer sequence and its byte range as absolute stream positions
    /// (bytes ever appended before it); `buffer.readable` starts at position `released`.
    private var index: [(sequence: UInt64, start: Int, end: Int)] = []
    private var first = 0
    private var released = 0

    var count: Int { index.count - first }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ header: RecordHeader, session: UnsafeRawBufferPointer, kind: UnsafeRawBufferPointer,
                         contentType: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) throws(RecordTooLarge) {
        let start = released + buffer.count
        try buffer.appendPublishRecord(header, session: session, kind: kind, contentType: contentType, payload: payload)
        index.append((header.producerSequence, start, released + buffer.count))
    }

    /// Forgets every record with a sequence at or below `through`.
    mutating func acknowledge(through: UInt64) {
        var end = first
        while end < index.count, index[end].sequence <= through { end += 1 }
        guard end > first else { return }
        let newReleased = index[end - 1].end
        buffer.consume(newReleased - released)
        released = newReleased
        first = end
        if first == index.count {
            index.removeAll(keepingCapacity: true)
            first = 0
        } else if first >= 4096 && first * 2 >= index.count {
            index.removeFirst(first)
            first = 0
        }
    }

    /// Up to `maxRecords` records starting `position` records after the oldest held, whose
    /// bytes fit in `maxBytes` (always at least one when any is left): their bytes and count.
    func batch(from position: Int, maxRecords: Int, maxBytes: Int) -> (bytes: UnsafeRawBufferPointer, count: Int) {
        let start = first + position
        guard start < index.count else { return (UnsafeRawBufferPointer(start: nil, count: 0), 0) }
        var end = start + 1
        while end < index.count, end - start < maxRecords, index[end].end - index[start].start <= maxBytes { end += 1 }
        let lower = index[start].start - released, upper = index[end - 1].end - released
        return (UnsafeRawBufferPointer(rebasing: buffer.readable[lower ..< upper]), end - start)
    }
}
