import AllegroPosix
import AllegroWire

/// How a `Collector` subscribes.
public struct CollectorOptions: Sendable {
    /// Relay endpoints, tried in order.
    public var relays: [SocketAddress]
    public var clientID = "allegro-collector"
    public var token = ""
    /// A durable collector name configured on the relay; empty for an ephemeral subscription.
    public var name = ""
    public var start: StartPosition = .latest
    /// Flow-control window in records: the most delivered and not yet taken by `next`.
    public var window: UInt32 = 4096
    /// Ephemeral only: receive records as soon as the relay accepts them, before they are
    /// fsync'd (lower lag; after a relay crash such a record may be gone or come again under a
    /// new number). Off: only records the relay can never forget.
    public var live = false
    public var connectTimeoutMillis: Int32 = 5_000

    public init(relays: [SocketAddress]) { self.relays = relays }
}

/// What a collector receives next.
public enum CollectorEvent {
    /// A record; its views are valid until the next call to `next`.
    case record(DeliveredRecord)
    /// Relay sequences `first ... last` were never assigned (a relay crash), not lost.
    case skip(first: UInt64, last: UInt64)
}

/// Subscribes to a relay's stream and hands out records in relay-sequence order, granting
/// credit as they are taken so the relay never sends more than `window` ahead. Checks that
/// sequences only increase. Not thread-safe: one owner calls it.
public final class Collector {
    public let options: CollectorOptions
    /// The relay's answer to the subscription.
    public let subscription: Subscribed
    /// The cursor the relay last confirmed for this durable collector.
    public private(set) var committed: UInt64
    /// The relay sequence of the last record handed out (0 before the first).
    public private(set) var lastSequence: UInt64 = 0
    private let connection: WireConnection
    private var iterator: DeliverBatch.Iterator?
    private var takenSinceCredit: UInt32 = 0
    private var lastSentAt = Clock.monotonicNanos
    private var isClosed = false

    /// Connects to the first reachable relay and subscribes.
    public init(_ options: CollectorOptions) throws(ClientError) {
        self.options = options
        var lastError: ClientError?
        var opened: WireConnection?
        for address in options.relays {
            do throws(ClientError) {
                opened = try WireConnection(to: address, role: .collector, clientID: options.clientID,
                                            token: options.token, timeoutMillis: options.connectTimeoutMillis)
                break
            } catch {
                if error.isPermanent { throw error }
                lastError = error
            }
        }
        guard let opened else { throw lastError ?? .disconnected("no relay address given") }
        connection = opened
        do throws(ClientError) {
            opened.outbound.append(.subscribe(start: options.start, credit: options.window, name: options.name, live: options.live))
            try opened.flush(timeoutMillis: options.connectTimeoutMillis)
            let deadline = Clock.monotonicNanos + UInt64(options.connectTimeoutMillis) * 1_000_000
            guard let frame = try opened.nextFrame(deadline: deadline) else { throw ClientError.timedOut("no SUBSCRIBED") }
            switch frame {
            case let .subscribed(answer):
                subscription = answer
                committed = answer.committed
                lastSequence = answer.firstSequence &- 1
            case let .error(code, message):
                throw ClientError.refused(code: code, message: message.string)
            default:
                throw ClientError.protocolViolation("expected SUBSCRIBED, got \(frame.type.name)")
            }
        } catch {
            opened.close()
            throw error
        }
    }


    /// The next record or skip marker, waiting up to `timeoutMillis`; nil on timeout.
    public func next(timeoutMillis: Int) throws(ClientError) -> CollectorEvent? {
        let deadline = Clock.monotonicNanos + UInt64(max(timeoutMillis, 0)) * 1_000_000
        try heartbeatIfDue()
        while true {
            if var current = iterator, let record = current.next() {
                iterator = current
                guard record.relaySequence > lastSequence else {
                    throw .protocolViolation("relay sequence \(record.relaySequence) after \(lastSequence)")
                }
                lastSequence = record.relaySequence
                try took(1)
                return .record(record)
            }
            iterator = nil
            guard let frame = try connection.nextFrame(deadline: deadline) else { return nil }
            if let event = try handle(frame) { return event }
        }
    }

    /// Commits every record through `sequence` (durable collectors); the relay confirms later.
    public func commit(through sequence: UInt64) throws(ClientError) {
        connection.outbound.append(.commit(through: sequence))
        try connection.flush(timeoutMillis: options.connectTimeoutMillis)
    }

    /// Waits until the relay confirms a commit through at least `sequence`. Records that arrive
    /// meanwhile are dropped: they come after the commit, so the relay delivers them again to
    /// whoever resumes from this cursor.
    public func waitCommitted(through sequence: UInt64, timeoutMillis: Int = 10_000) throws(ClientError) {
        let deadline = Clock.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
        iterator = nil
        while committed < sequence {
            guard let frame = try connection.nextFrame(deadline: deadline) else {
                throw .timedOut("no COMMITTED through \(sequence)")
            }
            if case .deliver = frame { continue }
            _ = try handle(frame)
        }
    }

    /// Says GOODBYE and closes.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        connection.outbound.append(.goodbye)
        try? connection.flush(timeoutMillis: 1000)
        connection.close()
    }

    private func handle(_ frame: Frame) throws(ClientError) -> CollectorEvent? {
        switch frame {
        case let .deliver(batch):
            iterator = batch.makeIterator()
        case let .skip(first, last):
            guard first > lastSequence else { throw .protocolViolation("SKIP \(first) after \(lastSequence)") }
            lastSequence = last
            return .skip(first: first, last: last)
        case let .committed(through):
            committed = max(committed, through)
        default:
            try connection.handleCommon(frame, role: "collector")
            if !connection.outbound.isEmpty { try connection.flush(timeoutMillis: options.connectTimeoutMillis) }
        }
        return nil
    }

    /// Sends a PING when nothing has gone to the relay for a heartbeat interval (a collector
    /// with a large window may otherwise say nothing for a long time).
    private func heartbeatIfDue() throws(ClientError) {
        let heartbeat = UInt64(connection.welcome?.heartbeatMillis ?? 5000) * 1_000_000
        guard Clock.monotonicNanos - lastSentAt >= heartbeat else { return }
        connection.outbound.append(.ping(nonce: 0))
        try connection.flush(timeoutMillis: options.connectTimeoutMillis)
        lastSentAt = Clock.monotonicNanos
    }

    /// Counts records taken and grants credit every half window.
    private func took(_ count: UInt32) throws(ClientError) {
        takenSinceCredit += count
        if takenSinceCredit >= max(options.window / 2, 1) {
            connection.outbound.append(.credit(takenSinceCredit))
            takenSinceCredit = 0
            try connection.flush(timeoutMillis: options.connectTimeoutMillis)
            lastSentAt = Clock.monotonicNanos
        }
    }
}
