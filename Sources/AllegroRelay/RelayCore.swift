import AllegroPosix
import AllegroRing
import AllegroWire

/// The relay's protocol logic, free of sockets and epoll: it reads frames from a connection's
/// inbound buffer, sequences records into the ring, tracks what is safe to acknowledge, and
/// writes answers and deliveries into outbound buffers. The event loop (`RelayServer`) moves
/// the bytes and calls in; everything here runs on that one thread.
///
/// Guarantees it keeps:
/// - every record accepted gets the next relay sequence (gapless) and an ingest time;
/// - a producer's record is acked only once safe: at once without durable collectors, else
///   once every durable collector committed it;
/// - a resent record (producer sequence at or below the producer's mark) is dropped, not
///   sequenced again, and acked once the original is safe;
/// - records a durable collector has not committed are never reclaimed from the ring: when it
///   is full, ingest pauses (`readPaused`) until commits make room;
/// - any protocol violation ends that connection with an ERROR; nothing else is affected.
final class RelayCore {
    let configuration: RelayConfiguration
    let ring: RecordRing
    let log: RelayLog
    private let producerToken: Token?
    private let collectorToken: Token?
    private let welcome: Welcome

    private var producerStates: [String: ProducerState] = [:]
    private let durableByName: [String: DurableCollector]
    private let durables: [DurableCollector]
    private(set) var producers: [Connection] = []
    private(set) var collectors: [Connection] = []
    /// Highest relay sequence every durable collector has committed (all, when there are none).
    private(set) var safeRelaySequence: UInt64
    /// Set when commits advanced: acks may be due and paused producers may resume.
    var commitsAdvanced = false
    private var pingNonce: UInt64 = 0
    /// Connections with output to send or a close to carry out; the server drains it.
    var flushQueue: [Connection] = []

    init(configuration: RelayConfiguration, log: RelayLog) {
        self.configuration = configuration
        self.log = log
        ring = RecordRing(byteCapacity: configuration.ringBytes, slotCapacity: configuration.ringRecords)
        producerToken = configuration.producerToken.map(Token.init)
        collectorToken = configuration.collectorToken.map(Token.init)
        durables = configuration.durableCollectors.map(DurableCollector.init)
        durableByName = Dictionary(uniqueKeysWithValues: durables.map { ($0.name, $0) })
        safeRelaySequence = durables.isEmpty ? UInt64.max : 0
        welcome = Welcome(version: Wire.version, maxFrameLength: UInt32(configuration.maxFrameBytes),
                          maxBatchRecords: UInt32(configuration.maxBatchRecords),
                          heartbeatMillis: UInt32(configuration.heartbeatMillis),
                          idleTimeoutMillis: UInt32(configuration.idleTimeoutMillis),
                          relayID: configuration.relayID)
    }

    // MARK: Inbound frames

    /// Handles every whole frame in the connection's inbound buffer, until it is empty, the
    /// connection pauses (ring full) or closes.
    func received(_ connection: Connection) {
        if case let .producer(session) = connection.state, let interrupted = session.interrupted {
            session.interrupted = nil
            guard ingest(interrupted.batch, from: interrupted.resumeAt, at: interrupted.ingestNanos,
                         session, connection) else { return finishPass(connection) }
        }
        while !connection.isClosing && !connection.readPaused {
            let frame: Frame?
            do throws(WireError) {
                frame = try connection.inbound.next()
            } catch {
                fail(connection, error.code, error.description)
                return
            }
            guard let frame else { break }
            handle(frame, connection)
        }
        finishPass(connection)
    }

    private func handle(_ frame: Frame, _ connection: Connection) {
        switch (connection.state, frame) {
        case (.closing, _):
            return
        case let (.handshake, .hello(hello)):
            accept(hello, connection)
        case (.handshake, _):
            fail(connection, .unexpectedFrame, "the first frame must be HELLO, not \(frame.type.name)")
        case let (_, .ping(nonce)):
            connection.outbound.append(.pong(nonce: nonce))
        case (_, .pong):
            return
        case (_, .error):
            retire(connection)
            connection.state = .closing
        case (_, .goodbye):
            finishPass(connection)
            connection.outbound.append(.goodbye)
            retire(connection)
            connection.state = .closing
        case let (.producer(session), .publish(batch)):
            _ = ingest(batch, from: 0, at: Clock.wallNanos, session, connection)
        case (.producer, .subscribe), (.producer, .credit), (.producer, .commit):
            fail(connection, .notPermitted, "a producer may not send \(frame.type.name): connect as a collector to subscribe")
        case let (.collector(session), .subscribe(request)):
            subscribe(request, session, connection)
        case let (.collector(session), .credit(credit)):
            guard session.subscribed else { return fail(connection, .unexpectedFrame, "CREDIT before SUBSCRIBE") }
            session.credit = min(session.credit + UInt64(credit), UInt64(UInt32.max) * 4)
        case let (.collector(session), .commit(through)):
            commit(through, session, connection)
        case (.collector, .publish):
            fail(connection, .notPermitted, "a collector may not publish: connect as a producer")
        default:
            fail(connection, .unexpectedFrame, "\(frame.type.name) is not expected from a \(connection.roleName) here")
        }
    }

    /// Puts the connection on the flush queue (once).
    func touch(_ connection: Connection) {
        guard !connection.queuedForFlush else { return }
        connection.queuedForFlush = true
        flushQueue.append(connection)
    }

    /// Queues what a pass over inbound frames made due: a producer's ACK, a collector's COMMITTED.
    private func finishPass(_ connection: Connection) {
        touch(connection)
        switch connection.state {
        case let .producer(session):
            session.settle(safeRelay: safeRelaySequence)
            if session.safeThrough > session.ackedThrough {
                session.ackedThrough = session.safeThrough
                connection.outbound.append(.ack(through: session.ackedThrough))
            }
        case let .collector(session):
            if session.commitReplyDue, let durable = session.durable {
                session.commitReplyDue = false
                connection.outbound.append(.committed(through: durable.committed))
            }
        default:
            break
        }
    }

    // MARK: Handshake

    private func accept(_ hello: Hello, _ connection: Connection) {
        guard hello.negotiate() != nil else {
            return fail(connection, .unsupportedVersion,
                        "this relay speaks protocol version \(Wire.version); the HELLO offered \(hello.minVersion) ... \(hello.maxVersion)")
        }
        let expected = hello.role == .producer ? producerToken : collectorToken
        if let expected, !expected.matches(hello.token.bytes) {
            log.log(.warning, "auth_failed", ["peer": connection.peer, "role": hello.role.name])
            return fail(connection, .authFailed, "wrong token for role \(hello.role.name)")
        }
        connection.inbound.limits = configuration.decodeLimits
        switch hello.role {
        case .producer:
            let id = hello.clientID.string
            let state = producerStates[id] ?? ProducerState(id: hello.clientID.array)
            producerStates[id] = state
            state.connections += 1
            connection.state = .producer(ProducerSession(producer: state))
            producers.append(connection)
        case .collector:
            connection.state = .collector(CollectorSession())
        }
        connection.outbound.append(.welcome(welcome))
        log.log(.debug, "hello", ["peer": connection.peer, "role": hello.role.name, "client": hello.clientID.string])
    }

    // MARK: Producers

    /// Sequences the batch's records from index `start`. Returns false when it stopped early:
    /// the ring is full (the connection is paused with the rest remembered) or the connection failed.
    private func ingest(_ batch: PublishBatch, from start: Int, at ingestNanos: UInt64,
                        _ session: ProducerSession, _ connection: Connection) -> Bool {
        let producer = session.producer
        let retain = retainFrom()
        let maxDelivered = configuration.maxFrameBytes - 9
        return producer.id.withUnsafeBytes { id in
            var index = 0
            for record in batch {
                defer { index += 1 }
                if index < start { continue }
                if record.producerSequence <= producer.highWaterMark {
                    session.expect(relay: producer.highWaterRelaySequence, producer: record.producerSequence)
                    continue
                }
                let size = DeliveredRecordLayout.encodedSize(producerLength: id.count, record)
                guard size <= maxDelivered else {
                    fail(connection, .frameTooLarge,
                         "record \(record.producerSequence) is \(size) bytes as delivered; the most one DELIVER frame can carry is \(maxDelivered)")
                    return false
                }
                let sequence = ring.append(size: size, retain: retain) { space, sequence in
                    if let base = space.baseAddress {
                        DeliveredRecordLayout.encode(into: base, relaySequence: sequence, ingestNanos: ingestNanos,
                                                     producer: id, record)
                    }
                }
                guard let sequence else {
                    session.interrupted = (batch, index, ingestNanos)
                    connection.readPaused = true
                    return false
                }
                producer.highWaterMark = record.producerSequence
                producer.highWaterRelaySequence = sequence
                session.expect(relay: sequence, producer: record.producerSequence)
            }
            return true
        }
    }

    /// The oldest relay sequence some durable collector still needs (all of them if none is configured: nothing is held).
    private func retainFrom() -> UInt64 {
        var oldest = UInt64.max
        for durable in durables {
            var needed = durable.committed + 1
            if let connection = durable.connection, case let .collector(session) = connection.state, session.subscribed {
                needed = min(needed, session.cursor)
            }
            oldest = min(oldest, needed)
        }
        return oldest
    }

    /// After commits advanced: queues the acks now due. Returns the paused producers, which may
    /// now resume.
    func settleAfterCommits() -> [Connection] {
        commitsAdvanced = false
        var resumable: [Connection] = []
        for connection in producers {
            guard case let .producer(session) = connection.state else { continue }
            if session.hasPending { finishPass(connection) }
            if connection.readPaused { resumable.append(connection) }
        }
        return resumable
    }

    // MARK: Collectors

    private func subscribe(_ request: Subscribe, _ session: CollectorSession, _ connection: Connection) {
        guard !session.subscribed else {
            return fail(connection, .unexpectedFrame, "one SUBSCRIBE per connection; reconnect to start elsewhere")
        }
        var durable: DurableCollector?
        if !request.name.isEmpty {
            guard let named = durableByName[request.name.string] else {
                return fail(connection, .unknownCollector,
                            "no durable collector named \(request.name.string) is configured; subscribe without a name for an ephemeral tail")
            }
            durable = named
        }
        let head = ring.head, tail = ring.tail
        let first: UInt64
        switch request.start {
        case .earliest: first = tail
        case .latest: first = head
        case .committed: first = (durable?.committed ?? 0) + 1
        case let .sequence(sequence): first = sequence
        }
        guard first >= tail, first <= head else {
            return fail(connection, .cursorUnavailable,
                        "start \(first) is outside what this relay holds: sequences \(tail) ... \(head) (\(head) is the next to be assigned)")
        }
        if let durable {
            if let previous = durable.connection, previous !== connection {
                fail(previous, .collectorBusy, "a newer connection subscribed as \(durable.name)")
            }
            durable.connection = connection
        }
        session.subscribed = true
        session.cursor = first
        session.credit = UInt64(request.credit)
        session.durable = durable
        collectors.append(connection)
        connection.outbound.append(.subscribed(Subscribed(firstSequence: first, headSequence: head,
                                                          committed: durable?.committed ?? 0)))
        log.log(.debug, "subscribe", ["peer": connection.peer, "name": durable?.name ?? "", "first": String(first)])
    }

    private func commit(_ through: UInt64, _ session: CollectorSession, _ connection: Connection) {
        guard session.subscribed else { return fail(connection, .unexpectedFrame, "COMMIT before SUBSCRIBE") }
        guard let durable = session.durable else {
            return fail(connection, .notPermitted, "an ephemeral subscription cannot commit; subscribe with a durable collector name")
        }
        guard through <= session.lastDelivered else {
            return fail(connection, .commitOutOfRange,
                        "commit through \(through) is beyond the last record delivered on this connection (\(session.lastDelivered))")
        }
        session.commitReplyDue = true
        guard through > durable.committed else { return }
        durable.committed = through
        safeRelaySequence = durables.reduce(UInt64.max) { min($0, $1.committed) }
        commitsAdvanced = true
    }

    /// Writes DELIVER frames for a subscribed collector while it has credit, records are
    /// waiting and its buffer is under its bound. Returns true when more could be delivered
    /// once the buffer drains.
    func fill(_ connection: Connection) -> Bool {
        guard case let .collector(session) = connection.state, session.subscribed else { return false }
        let outbound = connection.outbound
        let head = ring.head
        let maxFrame = configuration.maxFrameBytes
        let maxBatch = configuration.maxBatchRecords
        while session.credit > 0, session.cursor < head, outbound.count < configuration.collectorBufferBytes {
            guard session.cursor >= ring.tail else {
                fail(connection, .cursorUnavailable,
                     "fell behind: record \(session.cursor) left the ring (oldest held: \(ring.tail)); reconnect from earliest or a durable cursor")
                return false
            }
            let mark = outbound.beginBatch(.deliver)
            var count = 0
            while count < maxBatch, UInt64(count) < session.credit, session.cursor < head {
                let record = ring.record(session.cursor)
                if count > 0 && outbound.size(since: mark) + record.count > maxFrame { break }
                outbound.append(raw: record)
                session.cursor += 1
                count += 1
            }
            outbound.endBatch(mark, count: count)
            session.credit -= UInt64(count)
        }
        return session.credit > 0 && session.cursor < head
    }

    // MARK: Timers and endings

    /// Applies the handshake and idle timeouts and sends heartbeats.
    func sweep(_ connection: Connection, now: UInt64) {
        let millis: (UInt64) -> UInt64 = { (now &- $0) / 1_000_000 }
        switch connection.state {
        case .closing:
            return
        case .handshake:
            if millis(connection.acceptedAt) >= UInt64(configuration.handshakeTimeoutMillis) {
                fail(connection, .handshakeTimeout, "no HELLO within \(configuration.handshakeTimeoutMillis) ms")
            }
        case .producer, .collector:
            // A connection the relay is not reading (backpressure) cannot be blamed for silence.
            let reading = connection.wantsInput(backlogLimit: configuration.outputBacklogLimit)
            if reading && millis(connection.lastReceived) >= UInt64(configuration.idleTimeoutMillis) {
                fail(connection, .idleTimeout, "nothing received for \(configuration.idleTimeoutMillis) ms")
            } else if millis(connection.lastSent) >= UInt64(configuration.heartbeatMillis) && connection.outbound.isEmpty {
                pingNonce &+= 1
                connection.outbound.append(.ping(nonce: pingNonce))
            }
        }
    }

    /// Ends the connection with an ERROR frame; the server drains it and closes.
    func fail(_ connection: Connection, _ code: ErrorCode, _ message: String) {
        guard !connection.isClosing else { return }
        log.log(.info, "connection_error", ["peer": connection.peer, "role": connection.roleName, "code": code.name, "message": message])
        retire(connection)
        connection.outbound.append(.error(code, message))
        connection.state = .closing
        touch(connection)
    }

    /// Detaches the connection from the relay's shared state (producer marks stay; a durable
    /// collector's cursor stays).
    func retire(_ connection: Connection) {
        switch connection.state {
        case let .producer(session):
            session.producer.connections -= 1
            producers.removeAll { $0 === connection }
        case let .collector(session):
            if let durable = session.durable, durable.connection === connection { durable.connection = nil }
            collectors.removeAll { $0 === connection }
        default:
            break
        }
        connection.readPaused = false
    }
}
