import AllegroPosix
import AllegroWire

/// How a `Producer` connects and batches.
public struct ProducerOptions: Sendable {
    /// Relay endpoints, tried in order on every (re)connect.
    public var relays: [SocketAddress]
    /// The producer id: the relay drops resent duplicates by (id, sequence).
    public var producerID: String
    public var token = ""
    /// The first producer sequence. A producer that restarts without its state must start
    /// above anything it used before (for example from the wall clock in microseconds).
    public var firstSequence: UInt64 = 1
    /// Records per PUBLISH (capped by the relay's max_batch and max_frame).
    public var batchRecords = 512
    /// Most records held unacknowledged; `publish` waits for acks beyond it.
    public var windowRecords = 65_536
    public var connectTimeoutMillis: Int32 = 5_000
    /// How long to keep trying to reconnect before a call fails.
    public var reconnectForMillis = 30_000
    /// Told about every failed connection attempt and every connection made, on the caller's
    /// thread, so a command line can say at once what is happening instead of waiting silently.
    public var onConnection: (@Sendable (ConnectionEvent) -> Void)?

    public init(relays: [SocketAddress], producerID: String) {
        self.relays = relays
        self.producerID = producerID
    }
}

/// What a `Producer` (or `Collector`) tells its `onConnection` observer.
public enum ConnectionEvent: Sendable {
    /// An attempt failed; another follows unless the error is permanent or no time is left.
    case failed(address: SocketAddress, error: ClientError, willRetry: Bool, millisLeft: Int)
    /// Connected.
    case connected(address: SocketAddress)
}

/// Publishes records to a relay: batches them, pipelines batches without waiting for each ack,
/// keeps every record until the relay acknowledges it, and after a lost connection reconnects
/// (with backoff, trying each endpoint in turn) and resends what was not acknowledged. The
/// relay drops the duplicates that resending may create. Not thread-safe: one owner calls it.
public final class Producer {
    public let options: ProducerOptions
    private var connection: WireConnection?
    private var unacked = UnackedRecords()
    /// Records (counted from the oldest unacked) already sent on the current connection.
    private var sentCount = 0
    private var maxBatch = 1
    private var maxBatchBytes = 4096
    /// The relay's frame limit (from WELCOME): one record as delivered must fit one DELIVER frame.
    public private(set) var maxFrameBytes = 0
    private var heartbeatNanos: UInt64 = 5_000_000_000
    private var lastSent: UInt64 = 0

    /// The sequence the next record will get.
    public private(set) var nextSequence: UInt64
    /// Every record at or below this sequence is acknowledged.
    public private(set) var ackedThrough: UInt64 = 0
    /// Connections made after the first.
    public private(set) var reconnects = 0
    private var connections = 0

    /// Records published but not yet acknowledged.
    public var unackedCount: Int { unacked.count }

    /// Connects (retrying for `reconnectForMillis`).
    public init(_ options: ProducerOptions) throws(ClientError) {
        self.options = options
        nextSequence = max(options.firstSequence, 1)
        ackedThrough = nextSequence - 1
        _ = try connected()
    }


    /// Queues one record and returns its producer sequence. Sends a batch when one is full;
    /// waits for acks while `windowRecords` are outstanding.
    @discardableResult
    public func publish(session: String = "", kind: String = "", contentType: String = "",
                        payload: UnsafeRawBufferPointer, eventTimeNanos: UInt64 = Clock.wallNanos) throws(ClientError) -> UInt64 {
        let sequence = nextSequence
        // The relay refuses a record that cannot travel alone in one DELIVER frame (its
        // max_frame_bytes): say so here, before anything is sent, with the real payload limit.
        let fields = DeliveredRecordLayout.headerSize + options.producerID.utf8.count + session.utf8.count + kind.utf8.count
            + contentType.utf8.count
        if fields + payload.count > maxBatchBytes {
            throw .recordTooLarge(RecordTooLarge(field: "payload", length: payload.count, limit: max(0, maxBatchBytes - fields)))
        }
        var session = session, kind = kind, contentType = contentType
        let appended: RecordTooLarge? = session.withUTF8 { s in kind.withUTF8 { k in contentType.withUTF8 { c in
            do throws(RecordTooLarge) {
                try unacked.append(RecordHeader(producerSequence: sequence, eventTimeNanos: eventTimeNanos),
                                   session: UnsafeRawBufferPointer(s), kind: UnsafeRawBufferPointer(k),
                                   contentType: UnsafeRawBufferPointer(c), payload: payload)
                return nil
            } catch { return error }
        } } }
        if let appended { throw .recordTooLarge(appended) }
        nextSequence += 1
        if unacked.count - sentCount >= min(options.batchRecords, maxBatch) {
            try exchange(until: Clock.monotonicNanos + deadlineNanos) { true }
        }
        if unacked.count >= options.windowRecords {
            try exchange(until: Clock.monotonicNanos + deadlineNanos) { self.unacked.count < self.options.windowRecords }
        }
        return sequence
    }

    /// Sends everything queued and waits until all of it is acknowledged.
    public func flush(timeoutMillis: Int = 30_000) throws(ClientError) {
        try exchange(until: Clock.monotonicNanos + UInt64(timeoutMillis) * 1_000_000) { self.unacked.isEmpty }
    }

    /// Flushes, says GOODBYE and closes.
    public func close(timeoutMillis: Int = 30_000) throws(ClientError) {
        try flush(timeoutMillis: timeoutMillis)
        if let connection {
            connection.outbound.append(.goodbye)
            try? connection.flush(timeoutMillis: 1000)
            connection.close()
        }
        connection = nil
    }

    private var deadlineNanos: UInt64 { UInt64(options.reconnectForMillis) * 1_000_000 }

    // MARK: Moving bytes

    /// Sends unsent records and reads acks until `done()` holds with little left to write, or
    /// the deadline passes. Reconnects and resends on the way when the connection fails.
    private func exchange(until deadline: UInt64, _ done: () -> Bool) throws(ClientError) {
        while true {
            let trafficArrived: Bool
            do throws(ClientError) {
                let connection = try connected()
                queueUnsent(connection)
                try connection.writeSome()
                try connection.readSome()
                while let frame = try connection.decoded() { try handle(frame, connection) }
                try connection.checkOpen()
                if done() && connection.outbound.count < 256 * 1024 { return }
                trafficArrived = try connection.waitForTraffic(deadline: deadline)
            } catch {
                try recover(from: error, deadline: deadline)
                continue
            }
            // A timeout keeps the connection: the relay is alive, just not done yet.
            if !trafficArrived { throw .timedOut("\(unacked.count) records unacknowledged") }
        }
    }

    /// Encodes PUBLISH frames for records not yet sent on this connection, bounded so the
    /// outbound buffer stays small.
    private func queueUnsent(_ connection: WireConnection) {
        while sentCount < unacked.count && connection.outbound.count < 1 << 20 {
            let (bytes, count) = unacked.batch(from: sentCount, maxRecords: maxBatch, maxBytes: maxBatchBytes)
            guard count > 0 else { return }
            let mark = connection.outbound.beginBatch(.publish)
            connection.outbound.append(raw: bytes)
            connection.outbound.endBatch(mark, count: count)
            sentCount += count
            lastSent = Clock.monotonicNanos
        }
        if sentCount == unacked.count && Clock.monotonicNanos - lastSent > heartbeatNanos {
            connection.outbound.append(.ping(nonce: 0))
            lastSent = Clock.monotonicNanos
        }
    }

    private func handle(_ frame: Frame, _ connection: WireConnection) throws(ClientError) {
        switch frame {
        case let .ack(through):
            guard through >= ackedThrough, through < nextSequence else {
                throw .protocolViolation("ACK through \(through) outside \(ackedThrough) ... \(nextSequence - 1)")
            }
            let before = unacked.count
            unacked.acknowledge(through: through)
            sentCount = max(0, sentCount - (before - unacked.count))
            ackedThrough = through
        default:
            try connection.handleCommon(frame, role: "producer")
        }
    }

    // MARK: Connecting

    private func connected() throws(ClientError) -> WireConnection {
        if let connection { return connection }
        let reconnection = Reconnection(relays: options.relays, forMillis: options.reconnectForMillis,
                                        onConnection: options.onConnection)
        let (fresh, _) = try reconnection.connect { address throws(ClientError) in
            try WireConnection(to: address, role: .producer, clientID: options.producerID,
                               token: options.token, timeoutMillis: options.connectTimeoutMillis)
        }
        if let welcome = fresh.welcome {
            maxBatch = max(1, min(options.batchRecords, Int(welcome.maxBatchRecords)))
            maxBatchBytes = Wire.maxBatchedRecordBytes(maxFrameLength: Int(welcome.maxFrameLength))
            maxFrameBytes = Int(welcome.maxFrameLength)
            heartbeatNanos = UInt64(welcome.heartbeatMillis) * 1_000_000
        }
        connection = fresh
        connections += 1
        if connections > 1 { reconnects += 1 }
        sentCount = 0
        return fresh
    }

    private func recover(from error: ClientError, deadline: UInt64) throws(ClientError) {
        connection?.close()
        connection = nil
        if error.isPermanent || Clock.monotonicNanos >= deadline { throw error }
    }
}
