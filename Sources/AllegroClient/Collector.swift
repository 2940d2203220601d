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
    /// How long to keep trying to reach a relay, at the start and after a lost connection. 0:
    /// one attempt per relay at the start, and a lost connection is an error. After a
    /// reconnect the subscription resumes, under the same name, just after the last record
    /// handed out: no gap, no duplicate.
    public var reconnectForMillis = 0
    /// Told about every failed connection attempt (a lost connection too) and every connection
    /// made, on the caller's thread, so a command line can say at once what is happening.
    public var onConnection: (@Sendable (ConnectionEvent) -> Void)?

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
/// sequences only increase. A relay it has heard nothing from (not even the PONG to its PING)
/// for the relay's `idle_timeout_ms` counts as lost. With `reconnectForMillis` a lost
/// connection is made again and the subscription resumed after the last record handed out.
/// Not thread-safe: one owner calls it.
public final class Collector {
    public let options: CollectorOptions
    /// The relay's answer to the latest subscription.
    public private(set) var subscription: Subscribed
    /// The cursor the relay last confirmed for this durable collector.
    public private(set) var committed: UInt64
    /// The relay sequence of the last record handed out (0 before the first).
    public private(set) var lastSequence: UInt64 = 0
    /// Connections made again after a loss.
    public private(set) var reconnects = 0
    private var connection: WireConnection
    private var iterator: DeliverBatch.Iterator?
    private var takenSinceCredit: UInt32 = 0
    private var lastSentAt = Clock.monotonicNanos
    private var isClosed = false

    /// Connects to the first reachable relay and subscribes, retrying for `reconnectForMillis`.
    public init(_ options: CollectorOptions) throws(ClientError) {
        self.options = options
        let (opened, answer) = try Self.subscribe(options, start: options.start)
        connection = opened
        subscription = answer
        committed = answer.committed
        lastSequence = answer.firstSequence &- 1
    }

    /// The next record or skip marker, waiting up to `timeoutMillis`; nil on timeout.
    public func next(timeoutMillis: Int) throws(ClientError) -> CollectorEvent? {
        let deadline = Clock.monotonicNanos + UInt64(max(timeoutMillis, 0)) * 1_000_000
        while true {
            if var current = iterator, let record = current.next() {
                iterator = current
                guard record.relaySequence > lastSequence else {
                    throw .protocolViolation("relay sequence \(record.relaySequence) after \(lastSequence)")
                }
                lastSequence = record.relaySequence
                took(1)
                return .record(record)
            }
            iterator = nil
            do throws(ClientError) {
                if !connection.outbound.isEmpty { try send() }
                try heartbeatIfDue()
                let silentAfter = connection.lastHeardNanos + silenceNanos
                if let frame = try connection.nextFrame(deadline: min(deadline, silentAfter)) {
                    if let event = try handle(frame) { return event }
                } else if Clock.monotonicNanos >= silentAfter {
                    throw .disconnected("heard nothing from the relay for \(silenceNanos / 1_000_000) ms")
                } else if Clock.monotonicNanos >= deadline {
                    return nil
                }
            } catch {
                try recover(from: error)
            }
        }
    }

    /// Commits every record through `sequence` (durable collectors); the relay confirms later.
    public func commit(through sequence: UInt64) throws(ClientError) {
        connection.outbound.append(.commit(through: sequence))
        do throws(ClientError) { try send() } catch {
            try recover(from: error)
            try commit(through: sequence)
        }
    }

    /// Waits until the relay confirms a commit through at least `sequence`. Records that arrive
    /// meanwhile are dropped: they come after the commit, so the relay delivers them again to
    /// whoever resumes from this cursor.
    public func waitCommitted(through sequence: UInt64, timeoutMillis: Int = 10_000) throws(ClientError) {
        let deadline = Clock.monotonicNanos + UInt64(timeoutMillis) * 1_000_000
        iterator = nil
        while committed < sequence {
            do throws(ClientError) {
                guard let frame = try connection.nextFrame(deadline: deadline) else {
                    throw .timedOut("no COMMITTED through \(sequence)")
                }
                if case .deliver = frame { continue }
                _ = try handle(frame)
            } catch {
                if case .timedOut = error { throw error }
                try recover(from: error)
                try commit(through: sequence)
            }
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

    // MARK: Connecting

    /// Connects and subscribes from `start`, retrying as the options say.
    private static func subscribe(_ options: CollectorOptions, start: StartPosition) throws(ClientError)
        -> (WireConnection, Subscribed) {
        let reconnection = Reconnection(relays: options.relays, forMillis: options.reconnectForMillis,
                                        onConnection: options.onConnection)
        let (subscribed, _) = try reconnection.connect { address throws(ClientError) in
            let opened = try WireConnection(to: address, role: .collector, clientID: options.clientID,
                                            token: options.token, timeoutMillis: options.connectTimeoutMillis)
            do throws(ClientError) {
                opened.outbound.append(.subscribe(start: start, credit: options.window, name: options.name, live: options.live))
                try opened.flush(timeoutMillis: options.connectTimeoutMillis)
                let deadline = Clock.monotonicNanos + UInt64(options.connectTimeoutMillis) * 1_000_000
                guard let frame = try opened.nextFrame(deadline: deadline) else { throw ClientError.timedOut("no SUBSCRIBED") }
                switch frame {
                case let .subscribed(answer): return (opened, answer)
                case let .error(code, message): throw ClientError.refused(code: code, message: message.string)
                default: throw ClientError.protocolViolation("expected SUBSCRIBED, got \(frame.type.name)")
                }
            } catch {
                opened.close()
                throw error
            }
        }
        return subscribed
    }

    /// After a failure on the connection: rethrows it unless reconnecting is allowed and can
    /// help; otherwise connects again and resumes just after the last record handed out.
    private func recover(from error: ClientError) throws(ClientError) {
        guard options.reconnectForMillis > 0, !error.isPermanent, !isClosed else { throw error }
        // A newer connection took this durable name over: taking it back would start a tug of war.
        if case let .refused(code, _) = error, code == ErrorCode.collectorBusy.rawValue { throw error }
        connection.close()
        iterator = nil
        takenSinceCredit = 0
        options.onConnection?(.failed(address: connection.address, error: error, willRetry: true,
                                      millisLeft: options.reconnectForMillis))
        let (opened, answer) = try Self.subscribe(options, start: .sequence(lastSequence + 1))
        guard answer.firstSequence == lastSequence + 1 else {
            opened.close()
            throw .protocolViolation("resumed at \(answer.firstSequence), asked for \(lastSequence + 1)")
        }
        connection = opened
        subscription = answer
        committed = max(committed, answer.committed)
        lastSentAt = Clock.monotonicNanos
        reconnects += 1
    }

    // MARK: One connection

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
            if !connection.outbound.isEmpty { try send() }
        }
        return nil
    }

    /// How long the relay may say nothing before it counts as lost: its own idle timeout (it
    /// answers our PINGs, which go out every heartbeat).
    private var silenceNanos: UInt64 {
        UInt64(connection.welcome?.idleTimeoutMillis ?? 15_000) * 1_000_000
    }

    private func send() throws(ClientError) {
        try connection.flush(timeoutMillis: options.connectTimeoutMillis)
        lastSentAt = Clock.monotonicNanos
    }

    /// Sends a PING when nothing has gone to the relay for a heartbeat interval (a collector
    /// with a large window may otherwise say nothing for a long time).
    private func heartbeatIfDue() throws(ClientError) {
        let heartbeat = UInt64(connection.welcome?.heartbeatMillis ?? 5000) * 1_000_000
        guard Clock.monotonicNanos - lastSentAt >= heartbeat else { return }
        connection.outbound.append(.ping(nonce: 0))
        try send()
    }

    /// Counts records taken and queues credit every half window; it goes out before the next
    /// read, so a failed write never invalidates a record being handed out.
    private func took(_ count: UInt32) {
        takenSinceCredit += count
        if takenSinceCredit >= max(options.window / 2, 1) {
            connection.outbound.append(.credit(takenSinceCredit))
            takenSinceCredit = 0
        }
    }
}
