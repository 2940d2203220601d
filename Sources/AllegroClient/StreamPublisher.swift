import AllegroLog
import AllegroPosix
import Foundation
import Synchronization

/// Puts an Allegro process's own messages (the relay's alerts and daily report, the
/// supervisor's reports) on the relay's stream as a producer, like any other process that tells
/// Timmy something: the records are then ordered, spilled, acknowledged and delivered like
/// telemetry. While the relay is down they wait here, in order.
///
/// One thread owns the blocking `Producer`. A message leaves the queue only once the producer
/// holds it, and is told acknowledged (`onAcknowledged`) once the relay acked it; after a
/// failure the producer resends what it holds, and a producer that had to be replaced hands its
/// messages back to the queue (perhaps published twice then: alerts are keyed, so a reader
/// takes the same alert firing twice as one). Producer sequences are reserved in
/// `sequenceFile` before use (blocks of `reserveBlock`), so no sequence is used twice whatever
/// the wall clock does. The queue is bounded (`capacity`; the oldest are dropped and logged).
public final class StreamPublisher: Sendable {
    /// One record to publish, and what to do once the relay acknowledged it.
    public struct Message: Sendable {
        public var kind: String
        public var session: String
        public var payload: String
        public var onAcknowledged: (@Sendable () -> Void)?
    }

    public static let capacity = 4096
    static let batchMessages = 256
    static let reserveBlock: UInt64 = 10_000
    private let queue = Mutex<[Message]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)

    /// Starts the thread. `address` is the relay's own listening address.
    public init(address: SocketAddress, token: String?, producerID: String, sequenceFile: String, log: EventLog) {
        let thread = Thread { [self] in run(address: address, token: token, producerID: producerID, sequenceFile: sequenceFile, log: log) }
        thread.name = "allegro-publish"
        thread.start()
    }

    /// Queues a record of kind `kind` with `payload` (JSON) for the stream.
    public func publish(kind: String, session: String = "", payload: String, log: EventLog,
                        onAcknowledged: (@Sendable () -> Void)? = nil) {
        let dropped = queue.withLock { queue -> [Message] in
            queue.append(Message(kind: kind, session: session, payload: payload, onAcknowledged: onAcknowledged))
            let excess = max(queue.count - Self.capacity, 0)
            defer { queue.removeFirst(excess) }
            return Array(queue.prefix(excess))
        }
        for message in dropped { log.log(.error, "publish_dropped", ["kind": message.kind, "reason": "more than \(Self.capacity) waiting"]) }
        wake.signal()
    }

    /// Ends the thread after one last attempt (about 2 s) to publish what is queued.
    public func stop() {
        stopped.store(true, ordering: .releasing)
        wake.signal()
    }

    private func run(address: SocketAddress, token: String?, producerID: String, sequenceFile: String, log: EventLog) {
        var producer: Producer?
        var reservedThrough = Self.readReserved(sequenceFile)
        var held: [Message] = []  // in the producer, not yet acknowledged
        var lastRound = false
        while !lastRound {
            lastRound = stopped.load(ordering: .acquiring)
            if held.isEmpty && queue.withLock({ $0.isEmpty }) {
                if lastRound { break }
                _ = wake.wait(timeout: .now() + .seconds(1))
                continue
            }
            do {
                if producer == nil {
                    var options = ProducerOptions(relays: [address], producerID: producerID)
                    options.token = token ?? ""
                    options.firstSequence = max(Clock.wallNanos / 1000, reservedThrough + 1)
                    options.reconnectForMillis = lastRound ? 1_000 : 5_000
                    reservedThrough = try Self.reserve(options.firstSequence + Self.reserveBlock, in: sequenceFile)
                    producer = try Producer(options)
                }
                guard let current = producer else { continue }
                var batch = queue.withLock { queue in
                    defer { queue.removeFirst(min(queue.count, Self.batchMessages)) }
                    return Array(queue.prefix(Self.batchMessages))
                }
                defer { if !batch.isEmpty { queue.withLock { $0.insert(contentsOf: batch, at: 0) } } }
                while let message = batch.first {
                    if current.nextSequence >= reservedThrough {
                        reservedThrough = try Self.reserve(current.nextSequence + Self.reserveBlock, in: sequenceFile)
                    }
                    var payload = message.payload
                    do {
                        try payload.withUTF8 { bytes in
                            _ = try current.publish(session: message.session, kind: message.kind, contentType: "application/json",
                                                    payload: UnsafeRawBufferPointer(bytes))
                        }
                        held.append(message)
                    } catch ClientError.recordTooLarge(let error) {
                        log.log(.error, "publish_dropped", ["kind": message.kind, "reason": error.description])
                    }
                    batch.removeFirst()
                }
                try current.flush(timeoutMillis: lastRound ? 2_000 : 5_000)
                for message in held { message.onAcknowledged?() }
                held = []
            } catch {
                let permanent = (error as? ClientError)?.isPermanent ?? false
                log.log(permanent ? .error : .warning, "publish_waiting", ["reason": "\(error)", "records": String(held.count)])
                if permanent || lastRound {
                    // A new producer starts at new sequences: what this one held goes again.
                    try? producer?.close(timeoutMillis: 500)
                    producer = nil
                    queue.withLock { $0.insert(contentsOf: held, at: 0) }
                    held = []
                }
                if !lastRound { _ = wake.wait(timeout: .now() + .seconds(1)) }
            }
        }
        try? producer?.close(timeoutMillis: 1_000)
    }

    private static func readReserved(_ path: String) -> UInt64 {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        return UInt64(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// Records that sequences through `through` may be used, before any is.
    private static func reserve(_ through: UInt64, in path: String) throws -> UInt64 {
        try File.replaceDurably(path, with: Array("\(through)\n".utf8))
        return through
    }
}
