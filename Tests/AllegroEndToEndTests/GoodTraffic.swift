import AllegroTestSupport
import AllegroClient
import AllegroPosix
import AllegroWire
import Testing

/// A well-behaved producer and collector, used after each bad input to show the relay still
/// serves everyone else and has lost nothing it accepted.
struct GoodTraffic {
    let address: String
    var producerToken = ""
    var collectorToken = ""
    /// Records published (and acked) by good producers so far.
    private(set) var published = 0

    init(_ address: String, producerToken: String = "", collectorToken: String = "") {
        self.address = address
        self.producerToken = producerToken
        self.collectorToken = collectorToken
    }

    /// Publishes `count` records (each acked), then reads the whole stream from the earliest
    /// record and checks it: relay sequences 1, 2, 3, ... and every good record once, in order.
    /// `otherRecords`: how many records other producers added (nil: any number, as after
    /// random input that may happen to be valid).
    mutating func publishAndVerify(_ count: Int = 100, otherRecords: Int? = 0) throws {
        var options = ProducerOptions(relays: [try SocketAddress(parsing: address)], producerID: "good")
        options.token = producerToken
        options.firstSequence = UInt64(published + 1)
        options.batchRecords = 16
        let producer = try Producer(options)
        for index in published ..< published + count {
            try Array("good-\(index)".utf8).withUnsafeBytes { _ = try producer.publish(kind: "good", payload: $0) }
        }
        try producer.close(timeoutMillis: 10_000)
        #expect(producer.ackedThrough == UInt64(published + count))
        published += count

        var collectorOptions = CollectorOptions(relays: [try SocketAddress(parsing: address)])
        collectorOptions.start = .earliest
        collectorOptions.token = collectorToken
        let collector = try Collector(collectorOptions)
        defer { collector.close() }
        var expectedSequence: UInt64 = 1
        var good = 0
        while good < published {
            guard let event = try collector.next(timeoutMillis: 5000), case let .record(record) = event else {
                Issue.record("the stream stopped after \(good) of \(published) good records")
                return
            }
            #expect(record.relaySequence == expectedSequence)
            expectedSequence = record.relaySequence + 1
            if record.producer.equals("good") {
                #expect(record.payload.string == "good-\(good)")
                good += 1
            }
        }
        if let otherRecords { #expect(Int(expectedSequence - 1) == published + otherRecords) }
    }
}
