import AllegroClient
import AllegroLog
import AllegroPosix
import Foundation
import Synchronization

/// Puts the relay's own messages (alerts, the daily report) on its stream as a producer over
/// loopback, like any other Allegro process that tells Timmy something: the records are then
/// ordered, spilled, acknowledged and delivered like telemetry. One thread owns the blocking
/// `Producer`; `publish` only queues (bounded: `capacity` messages, the oldest dropped and
/// logged beyond it, so a relay that cannot ack never grows this queue without end).
public final class StreamPublisher: Sendable {
    public struct Message: Sendable {
        public var kind: String
        public var session: String
        public var payload: String
    }

    public static let capacity = 4096
    private let queue = Mutex<[Message]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)
    private let published = Atomic<Int>(0)

    /// Starts the thread. `address` is the relay's own listening address.
    public init(address: SocketAddress, token: String?, producerID: String, log: EventLog) {
        let thread = Thread { [self] in run(address: address, token: token, producerID: producerID, log: log) }
        thread.name = "allegro-publish"
        thread.start()
    }

    /// Messages acknowledged by the relay so far.
    public var acknowledged: Int { published.load(ordering: .relaxed) }

    public func publish(kind: String, session: String = "", payload: String, log: EventLog) {
        let dropped = queue.withLock { queue -> Message? in
            queue.append(Message(kind: kind, session: session, payload: payload))
            return queue.count > Self.capacity ? queue.removeFirst() : nil
        }
        if let dropped { log.log(.error, "publish_dropped", ["kind": dropped.kind, "reason": "more than \(Self.capacity) waiting"]) }
        wake.signal()
    }

    public func stop() {
        stopped.store(true, ordering: .releasing)
        wake.signal()
    }

    private func run(address: SocketAddress, token: String?, producerID: String, log: EventLog) {
        var producer: Producer?
        var unacked = 0
        while !stopped.load(ordering: .acquiring) {
            if unacked == 0 { _ = wake.wait(timeout: .now() + .seconds(1)) }
            let batch = queue.withLock { queue in defer { queue.removeAll() }; return queue }
            guard !batch.isEmpty || unacked > 0 else { continue }
            do {
                if producer == nil {
                    var options = ProducerOptions(relays: [address], producerID: producerID)
                    options.token = token ?? ""
                    // Above every sequence an earlier run of this relay used.
                    options.firstSequence = Clock.wallNanos / 1000
                    options.reconnectForMillis = 5_000
                    producer = try Producer(options)
                }
                guard let producer else { continue }
                for message in batch {
                    var payload = message.payload
                    try payload.withUTF8 { bytes in
                        try producer.publish(session: message.session, kind: message.kind, contentType: "application/json",
                                             payload: UnsafeRawBufferPointer(bytes))
                    }
                    unacked += 1
                }
                try producer.flush(timeoutMillis: 5_000)
                published.add(unacked, ordering: .relaxed)
                unacked = 0
            } catch {
                // Kept by the producer, resent after a reconnect; the relay drops duplicates.
                let permanent = (error as? ClientError)?.isPermanent ?? true
                log.log(.warning, "publish_waiting", ["reason": "\(error)", "records": String(unacked + (producer == nil ? batch.count : 0))])
                if producer == nil {
                    queue.withLock { $0.insert(contentsOf: batch, at: 0) }
                    Thread.sleep(forTimeInterval: 1)
                } else if permanent {
                    // A refusal retrying cannot fix (a token the relay no longer takes): start over.
                    log.log(.error, "publish_failed", ["reason": "\(error)", "records": String(unacked)])
                    producer = nil
                    unacked = 0
                    Thread.sleep(forTimeInterval: 1)
                }
            }
        }
        try? producer?.close(timeoutMillis: 2_000)
    }
}
