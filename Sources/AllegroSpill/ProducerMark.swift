import AllegroWire

/// A producer's dedup mark: the highest producer sequence accepted from it, and the relay
/// sequence that record got. A record whose producer sequence the mark `covers` is a resend.
///
/// This is the one place "keep the highest" is decided: ingest, the spill thread, recovery and
/// start-up all advance marks through `advance`, and the state database's upsert keeps the same
/// rule (`StateStore.raise`: the higher producer sequence wins, with its own relay sequence).
public struct ProducerMark: Sendable, Equatable {
    public var producer: [UInt8]
    public var producerSequence: UInt64
    public var relaySequence: UInt64

    public init(producer: [UInt8], producerSequence: UInt64 = 0, relaySequence: UInt64 = 0) {
        self.producer = producer
        self.producerSequence = producerSequence
        self.relaySequence = relaySequence
    }

    /// True when a record with `producerSequence` was already accepted (a resend).
    @inline(__always)
    public func covers(_ producerSequence: UInt64) -> Bool { producerSequence <= self.producerSequence }

    /// Moves the mark to (`producerSequence`, `relaySequence`) if that is higher; returns
    /// whether it moved. A lower or equal producer sequence changes nothing.
    @inline(__always) @discardableResult
    public mutating func advance(producerSequence: UInt64, relaySequence: UInt64) -> Bool {
        guard producerSequence > self.producerSequence else { return false }
        self.producerSequence = producerSequence
        self.relaySequence = relaySequence
        return true
    }

    /// `advance` to `other`'s position (same producer).
    @discardableResult
    public mutating func advance(to other: ProducerMark) -> Bool {
        assert(other.producer == producer, "marks of two producers merged")
        return advance(producerSequence: other.producerSequence, relaySequence: other.relaySequence)
    }
}

/// Producer marks by producer id, each kept at its highest (`ProducerMark.advance`).
public struct ProducerMarks: Sendable, Equatable {
    public private(set) var byProducer: [[UInt8]: ProducerMark] = [:]

    public init() {}

    public init(_ marks: some Sequence<ProducerMark>) {
        for mark in marks { advance(to: mark) }
    }

    public var count: Int { byProducer.count }
    public var isEmpty: Bool { byProducer.isEmpty }
    public var all: [ProducerMark] { Array(byProducer.values) }

    public subscript(producer: [UInt8]) -> ProducerMark? { byProducer[producer] }

    /// Keeps `mark` if it is higher than the one held for its producer (or the first).
    public mutating func advance(to mark: ProducerMark) {
        byProducer[mark.producer, default: ProducerMark(producer: mark.producer)].advance(to: mark)
    }

    /// The mark a record in DELIVER layout (its size checked) moves its producer to.
    public mutating func note(record: UnsafeRawBufferPointer) {
        guard let base = record.baseAddress else { return }
        advance(to: ProducerMark(producer: Array(DeliveredRecordLayout.producer(of: record)),
                                 producerSequence: DeliveredRecordLayout.producerSequence(at: base),
                                 relaySequence: DeliveredRecordLayout.relaySequence(at: base)))
    }

    public mutating func removeAll() { byProducer.removeAll(keepingCapacity: true) }
}
