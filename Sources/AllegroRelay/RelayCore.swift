import AllegroLog
import AllegroRing
import AllegroSpill
import AllegroWire

/// The relay's protocol logic, free of sockets and epoll: it reads frames from a connection's
/// inbound buffer, sequences records into the ring, tracks what is safe to acknowledge, and
/// writes answers and deliveries into outbound buffers. The event loop (`RelayServer`) moves
/// the bytes and calls in; everything here runs on that one thread.
///
/// Guarantees it keeps:
/// - every record accepted gets the next relay sequence (gapless within a run, never reused
///   across runs: numbers are reserved in the state database ahead of use) and an ingest time;
/// - a producer's record is acked only once it is in the spill and fsync'd (`SpillProgress`);
/// - a resent record (producer sequence at or below the producer's mark, which survives
///   restarts) is dropped, not sequenced again, and acked once the original is safe;
/// - the ring never reclaims a record the spill has not written: when it is full, ingest pauses
///   (`readPaused`) until the spill catches up;
/// - a collector whose cursor is older than the ring is served from the spill, then joins the
///   live stream with no gap and no duplicate; skipped numbers are marked with SKIP;
/// - any protocol violation ends that connection with an ERROR; nothing else is affected.
///
/// Its inputs are narrow so tests can drive it frame by frame without a process: the spill's
/// progress (`SpillProgress`), sequence reservation, the replay source, and the moment on every
/// entry point (it reads no clock).
final class RelayCore {
    let configuration: RelayConfiguration
    let ring: RecordRing
    let log: EventLog
    let spill: any SpillProgress
    let metrics: RelayMetrics
    private let reservation: any SequenceReservation
    private let replays: any ReplaySource
    /// Totals since start, for `/status` (the metrics carry the same counts).
    var traffic = RelayStatus.Traffic()
    /// The lag histograms' sampling: at most one observation a millisecond each.
    private var ingestLagSamples = SampleClock(intervalNanos: 1_000_000)
    private var dwellSamples = SampleClock(intervalNanos: 1_000_000)
    /// ERROR frames sent since the relay started, by code name.
    var errorsSent: [String: UInt64] = [:]
    private let producerToken: Token?
    private let collectorToken: Token?
    private let welcome: Welcome

    private var producerStates: [String: ProducerState] = [:]
    private let durableByName: [String: DurableCollector]
    let durables: [DurableCollector]
    private(set) var producers: [Connection] = []
    private(set) var collectors: [Connection] = []
    /// Relay sequences never assigned (an earlier run crashed after reserving them).
    private let skips: SkippedSequences
    /// What this run's start-up recovery found, for `/status` and `/metrics`.
    let recovery: RelayStatus.Recovery
    /// Relay sequences up to this may be assigned (persisted before use). Read per record on
    /// the I/O thread only: no runtime exclusivity check.
    @exclusivity(unchecked) private var reservedThrough: UInt64
    /// The first relay sequence of this run.
    private let runStart: UInt64
    private var pingNonce: UInt64 = 0
    /// Connections with output to send or a close to carry out; the server drains it.
    var flushQueue: [Connection] = []

    init(configuration: RelayConfiguration, log: EventLog, start resume: CoreStart, spill: any SpillProgress,
         replays: any ReplaySource, reservation: any SequenceReservation, metrics: RelayMetrics) {
        self.configuration = configuration
        self.log = log
        self.spill = spill
        self.replays = replays
        self.reservation = reservation
        self.metrics = metrics
        ring = RecordRing(byteCapacity: configuration.ringBytes, slotCapacity: configuration.ringRecords,
                          firstSequence: resume.firstSequence)
        producerToken = configuration.producerToken.map(Token.init)
        collectorToken = configuration.collectorToken.map(Token.init)
        durables = configuration.durableCollectors.map(DurableCollector.init)
        for durable in durables {
            durable.committed = resume.cursors[durable.name] ?? 0
            durable.saved = durable.committed
        }
        durableByName = Dictionary(uniqueKeysWithValues: durables.map { ($0.name, $0) })
        for mark in resume.marks {
            let state = ProducerState(id: mark.producer)
            state.mark.advance(to: mark)
            producerStates[String(decoding: mark.producer, as: UTF8.self)] = state
        }
        skips = resume.skips
        recovery = resume.recovery
        reservedThrough = resume.reservedThrough
        runStart = resume.firstSequence
        welcome = Welcome(version: Wire.version, maxFrameLength: UInt32(configuration.maxFrameBytes),
                          maxBatchRecords: UInt32(configuration.maxBatchRecords),
                          heartbeatMillis: UInt32(configuration.heartbeatMillis),
                          idleTimeoutMillis: UInt32(configuration.idleTimeoutMillis),
                          relayID: configuration.relayID)
    }

    /// Every record at or below this is safe (spilled and fsync'd).
    var safeRelaySequence: UInt64 { spill.safeThrough }

    /// Records accepted in this run that are not yet fsync'd in the spill (so not yet acked).
    /// Numbers below the run's first were settled by earlier runs, skipped ones included.
    var recordsAwaitingFsync: UInt64 {
        let head = ring.head
        guard head > runStart else { return 0 }
        return head - 1 - min(max(safeRelaySequence, runStart - 1), head - 1)
    }

    /// The oldest relay sequence held anywhere (spill or ring).
    var earliestSequence: UInt64 { min(spill.oldestSpilledSequence ?? .max, ring.tail) }

    // MARK: Inbound frames

    /// A producer paused by a full ring may go on: finishes its interrupted batch, then reads on.
    /// The core alone sets and clears `readPaused`.
    func resume(_ connection: Connection, now: Moment) {
        connection.readPaused = false
        received(connection, now: now)
    }

    /// Handles every whole frame in the connection's inbound buffer, until it is empty, the
    /// connection pauses (ring full) or closes.
    func received(_ connection: Connection, now: Moment) {
        // The spill is told once per pass, and only when the pass appended records: an ACK pass
        // after an fsync (`settleAcks`) would otherwise wake a spill thread that has nothing to do.
        let headBefore = ring.head
        defer { if ring.head != headBefore { spill.recordsAppended() } }
        if case let .producer(session) = connection.state, let interrupted = session.interrupted {
            session.interrupted = nil
            guard ingest(interrupted.batch, from: interrupted.resumeAt, at: interrupted.ingestNanos,
                         session, connection) else { return finishPass(connection) }
        }
        while !connection.isClosing && !connection.readPaused && connection.goodbyeDeadline == 0 {
            let frame: Frame?
            do throws(WireError) {
                frame = try connection.inbound.next()
            } catch {
                // `next()` never reports `truncated` (a partial frame waits for more bytes).
                let code = error.code ?? .malformedFrame
                fail(connection, code, error.description + (code == .frameTooLarge ? " (the relay's max_frame_bytes)" : ""))
                return
            }
            guard let frame else { break }
            handle(frame, connection, now)
        }
        finishPass(connection)
    }

    private func handle(_ frame: Frame, _ connection: Connection, _ now: Moment) {
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
            // Answered after the ACKs or COMMITTED still due (section 6), within the grace a
            // graceful stop has too; what is received after GOODBYE is not read.
            let grace = max(UInt64(configuration.shutdownGraceMillis), 1) * 1_000_000
            connection.goodbyeDeadline = now.monotonicNanos + grace
            connection.inputEnded = true
        case let (.producer(session), .publish(batch)):
            _ = ingest(batch, from: 0, at: now.wallNanos, session, connection)
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
            // COMMITTED names only a cursor that is on disk (coalescing commits waiting for it).
            if let awaited = session.commitAwaited, let durable = session.durable, durable.saved >= awaited {
                session.commitAwaited = nil
                connection.outbound.append(.committed(through: durable.saved))
            }
        default:
            break
        }
        if connection.goodbyeDeadline != 0 { answerGoodbye(connection, force: false) }
    }

    /// GOODBYE to a peer that said GOODBYE, once nothing it is owed is still to come (its
    /// records are all fsync'd and acked, its last commit saved), or when `force`d at the deadline.
    private func answerGoodbye(_ connection: Connection, force: Bool) {
        let settled: Bool
        switch connection.state {
        case let .producer(session): settled = !session.hasPending
        case let .collector(session): settled = session.commitAwaited == nil
        case .handshake: settled = true
        case .closing: return
        }
        guard settled || force else { return }
        if !settled {
            log.log(.warning, "goodbye_unsettled", ["peer": connection.peer,
                                                    "effect": "GOODBYE sent before every ACK or COMMITTED it was owed"])
        }
        connection.outbound.append(.goodbye)
        retire(connection)
        connection.state = .closing
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
            // One producer id, one writer: dedup trusts that every producer sequence at or below
            // the high-water mark was stored. An older connection still writing as this id
            // would have its next records dropped as duplicates (and acked), so it is ended;
            // what it sent before is stored, and what was safe was acked.
            for previous in producers where previous !== connection {
                if case let .producer(other) = previous.state, other.producer === state {
                    fail(previous, .producerReplaced, "a newer connection said HELLO as producer \(id)")
                }
            }
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
        // As delivered, alone in a DELIVER frame whose length is at most max_frame (PROTOCOL.md 4).
        let maxDelivered = Wire.maxBatchedRecordBytes(maxFrameLength: configuration.maxFrameBytes)
        var accepted = 0, payloadBytes = 0, duplicates = 0
        var lastEventTime: UInt64 = 0
        defer {
            traffic.recordsIn += UInt64(accepted)
            traffic.duplicates += UInt64(duplicates)
            if accepted > 0 {
                metrics.recordsIn.increment(by: accepted)
                metrics.bytesIn.increment(by: payloadBytes)
                if ingestLagSamples.take(at: ingestNanos) {
                    RelayMetrics.observe(metrics.ingestLag, from: lastEventTime, to: ingestNanos)
                }
            }
            if duplicates > 0 { metrics.duplicates.increment(by: duplicates) }
        }
        return producer.id.withUnsafeBytes { id in
            var index = 0
            for record in batch {
                defer { index += 1 }
                if index < start { continue }
                if producer.mark.covers(record.producerSequence) {
                    session.expect(relay: producer.mark.relaySequence, producer: record.producerSequence)
                    duplicates += 1
                    continue
                }
                let size = DeliveredRecordLayout.encodedSize(producerLength: id.count, record)
                guard size <= maxDelivered else {
                    fail(connection, .recordTooLarge,
                         "record \(record.producerSequence) is \(size) bytes as delivered; the most one DELIVER frame can carry is \(maxDelivered); "
                             + "it and the records after it in its batch were not accepted")
                    return false
                }
                guard ring.head <= reservedThrough || reserveSequences() else {
                    session.interrupted = (batch, index, ingestNanos)
                    connection.readPaused = true
                    return false
                }
                let sequence = ring.append(size: size) { space, sequence in
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
                producer.mark.advance(producerSequence: record.producerSequence, relaySequence: sequence)
                session.expect(relay: sequence, producer: record.producerSequence)
                accepted += 1
                payloadBytes += record.payload.count
                lastEventTime = record.eventTimeNanos
            }
            return true
        }
    }

    /// Persists the next block of relay sequences before any of it is used. False (logged)
    /// when the state database cannot be written: ingest pauses and is retried.
    private func reserveSequences() -> Bool {
        let through = reservedThrough + ResumePoint.reservationChunk
        do {
            try reservation.reserve(through: through)
            reservedThrough = through
            return true
        } catch {
            log.log(.error, "reserve_failed", ["error": "\(error)", "effect": "ingest paused until the state database accepts writes"])
            return false
        }
    }

    /// Forgets the dedup marks of producers that are not connected and whose last record has
    /// left the relay (spill and ring): nothing they could resend is still held. Keeps memory
    /// bounded by what retention keeps, however many producer ids come and go.
    func pruneProducers() {
        let earliest = earliestSequence
        producerStates = producerStates.filter { $0.value.connections > 0 || $0.value.mark.relaySequence >= earliest }
    }

    /// After the spill made records durable: queues the acks now due. Returns the paused
    /// producers, which may now resume (the spill has freed ring space).
    func settleAcks() -> [Connection] {
        var resumable: [Connection] = []
        for connection in producers {
            guard case let .producer(session) = connection.state else { continue }
            if session.hasPending { finishPass(connection) }
            if connection.readPaused { resumable.append(connection) }
        }
        settleCommits()
        return resumable
    }

    /// After the spill saved cursors: the COMMITTED answers now due.
    private func settleCommits() {
        for durable in durables {
            durable.saved = max(durable.saved, spill.savedCursor(durable.name))
            guard let connection = durable.connection, case let .collector(session) = connection.state,
                  session.commitAwaited != nil else { continue }
            finishPass(connection)
        }
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
                            "no durable collector named \(request.name.string) is configured: start the relay with --durable \(request.name.string) "
                                + "(or durable_collectors in its configuration), or subscribe without a name for an ephemeral tail")
            }
            durable = named
        }
        let head = ring.head, earliest = earliestSequence
        let first: UInt64
        switch request.start {
        case .earliest: first = earliest
        case .latest: first = head
        // A cursor whose records retention removed resumes at the oldest held (the loss was counted).
        case .committed: first = max((durable?.committed ?? 0) + 1, earliest)
        case let .sequence(sequence): first = sequence
        }
        guard first >= earliest, first <= head else {
            return fail(connection, .cursorUnavailable,
                        "start \(first) is outside what this relay holds: sequences \(earliest) ... \(head) (\(head) is the next to be assigned)")
        }
        if let durable, case .committed = request.start, durable.committed + 1 < first {
            countForcedLoss(durable.committed + 1 ... first - 1, durable)
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
        session.live = request.live
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
        // A commit at or below the cursor in force changes nothing; it is answered once that
        // cursor is saved.
        session.commitAwaited = max(session.commitAwaited ?? 0, through)
        guard through > durable.committed else { return }
        durable.committed = through
        spill.committed(durable.name, through: through)
    }

    /// Writes DELIVER frames for a subscribed collector while it has credit, records are
    /// waiting and its buffer is under its bound: from the spill (through its replay feed) while
    /// its cursor is older than the ring, then from the ring. Returns true when more could be
    /// delivered at once if the buffer drains.
    func fill(_ connection: Connection, now: Moment) -> Bool {
        // After its GOODBYE a collector is owed only its COMMITTED, not more records.
        guard case let .collector(session) = connection.state, session.subscribed, connection.goodbyeDeadline == 0 else {
            return false
        }
        var frames = DeliverFrames(outbound: connection.outbound, maxFrame: configuration.maxFrameBytes,
                                   maxBatch: configuration.maxBatchRecords)
        defer {
            frames.close()
            if frames.records > 0 {
                traffic.recordsOut += UInt64(frames.records)
                metrics.recordsOut.increment(by: frames.records)
                metrics.bytesOut.increment(by: frames.payloadBytes)
                if dwellSamples.take(at: now.wallNanos) {
                    RelayMetrics.observe(metrics.dwell, from: frames.firstIngest, to: now.wallNanos)
                }
            }
        }
        let limit = configuration.collectorBufferBytes
        let end = deliverableEnd(session)
        while session.credit > 0, connection.outbound.count < limit {
            if let feed = session.replay {
                if session.chunk == nil { session.chunk = feed.take() }
                if let chunk = session.chunk {
                    deliverChunk(chunk, feed, session, &frames, limit: limit)
                    continue
                }
                guard feed.isDrained else { return false }
                finishReplay(feed, session, &frames)
                continue
            }
            if session.cursor < ring.tail {
                if !skipIfNeverAssigned(session, &frames) { startReplay(session) }
                continue
            }
            guard session.cursor < end else { break }
            deliver(ring.record(session.cursor), sequence: session.cursor, session, &frames)
        }
        return session.credit > 0 && (session.cursor < end || session.chunk != nil)
    }

    /// One past the last sequence `session` may be given now: everything accepted for a live
    /// subscription, only what the spill has fsync'd for every other (so a crash can never
    /// take back a record a collector saw). The spill's progress wakes the loop, which fills again.
    private func deliverableEnd(_ session: CollectorSession) -> UInt64 {
        let head = ring.head
        return session.live ? head : min(head, safeRelaySequence &+ 1)
    }

    /// Copies records out of one replay chunk; gives the chunk back when it is used up.
    private func deliverChunk(_ chunk: ReplayChunk, _ feed: any ReplayStream, _ session: CollectorSession,
                              _ frames: inout DeliverFrames, limit: Int) {
        let bytes = chunk.bytes
        var records = DeliveredRecords(UnsafeRawBufferPointer(rebasing: bytes[min(session.chunkOffset, bytes.count)...])).makeIterator()
        while session.credit > 0, session.chunkOffset < bytes.count, frames.outbound.count < limit {
            // The spill checked every record of the block; bytes that are not one end the chunk.
            guard let record = records.next(), let base = record.baseAddress else {
                session.chunkOffset = bytes.count
                break
            }
            session.chunkOffset += record.count
            let sequence = DeliveredRecordLayout.relaySequence(at: base)
            if sequence >= session.cursor { deliver(record, sequence: sequence, session, &frames) }
        }
        if session.chunkOffset >= bytes.count {
            session.chunk = nil
            session.chunkOffset = 0
            feed.recycle(chunk)
        }
    }

    /// One record at `sequence`, after marking any numbers between the cursor and it.
    private func deliver(_ record: UnsafeRawBufferPointer, sequence: UInt64, _ session: CollectorSession,
                         _ frames: inout DeliverFrames) {
        if sequence > session.cursor { markGap(session.cursor ... sequence - 1, session, &frames) }
        frames.append(record)
        session.cursor = sequence + 1
        session.credit -= 1
    }

    /// The replay read everything spilled from its start: join the ring, or read again (the
    /// spill grew meanwhile), or step over numbers the spill never had.
    private func finishReplay(_ feed: any ReplayStream, _ session: CollectorSession, _ frames: inout DeliverFrames) {
        session.replay = nil
        log.log(.debug, "replay_finished", ["cursor": String(session.cursor), "ring_tail": String(ring.tail),
                                             "read_through": String(feed.readThrough)])
        guard session.cursor < ring.tail else { return }
        // Numbers below this run's first are final: if the spill lacks them, they are gone.
        let readThrough = max(feed.readThrough, runStart - 1)
        if readThrough >= session.cursor {
            // Everything spilled up to `readThrough` was read: what is missing below it is gone.
            let last = min(readThrough, ring.tail - 1)
            markGap(session.cursor ... last, session, &frames)
            session.cursor = last + 1
        }
    }

    /// If the cursor is in a range of numbers an earlier run never assigned, SKIP past it.
    private func skipIfNeverAssigned(_ session: CollectorSession, _ frames: inout DeliverFrames) -> Bool {
        guard let range = skips.range(containing: session.cursor) else { return false }
        markGap(session.cursor ... range.upperBound, session, &frames)
        session.cursor = range.upperBound + 1
        return true
    }

    private func startReplay(_ session: CollectorSession) {
        log.log(.debug, "replay_started", ["cursor": String(session.cursor), "ring_tail": String(ring.tail)])
        // A live subscription may read blocks not yet fsync'd; any other only fsync'd ones.
        session.replay = replays.replay(from: session.cursor, live: session.live)
    }

    /// Numbers `gap` will not be delivered: SKIP for the parts an earlier run never assigned;
    /// the rest were lost (retention or a damaged block, already counted) and are logged.
    private func markGap(_ gap: ClosedRange<UInt64>, _ session: CollectorSession, _ frames: inout DeliverFrames) {
        frames.close()
        var position = gap.lowerBound
        // The parts are disjoint and in order, so each SKIP starts past the one before.
        for part in skips.parts(of: gap) {
            let first = part.lowerBound, last = part.upperBound
            if first > position { reportUnavailable(position ... first - 1, session) }
            frames.outbound.append(.skip(first: first, last: last))
            position = last &+ 1
        }
        if position <= gap.upperBound && position != 0 { reportUnavailable(position ... gap.upperBound, session) }
    }

    private func reportUnavailable(_ range: ClosedRange<UInt64>, _ session: CollectorSession) {
        log.log(.warning, "records_unavailable", ["first": String(range.lowerBound), "last": String(range.upperBound),
                                                  "reason": "removed by retention or damaged in the spill"])
        if let durable = session.durable { countForcedLoss(range, durable) }
    }

    /// A durable collector was owed `range` and it is gone: what no count covers yet (recovery's
    /// losses, skips, and retention's own count at removal are covered) is retention's forced loss.
    private func countForcedLoss(_ range: ClosedRange<UInt64>, _ durable: DurableCollector) {
        let records = spill.countForcedLoss(range)
        guard records > 0 else { return }
        log.log(.warning, "retention_forced_loss", ["collector": durable.name, "first": String(range.lowerBound),
                                                    "last": String(range.upperBound), "records": String(records)])
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
            if connection.goodbyeDeadline != 0 {
                if now >= connection.goodbyeDeadline { answerGoodbye(connection, force: true) }
                return
            }
            // A connection the relay is not reading (backpressure) cannot be blamed for silence.
            let reading = connection.wantsInput(backlogLimit: configuration.outputBacklogLimit)
            if reading && millis(connection.lastReceived) >= UInt64(configuration.idleTimeoutMillis) {
                fail(connection, .idleTimeout, "nothing received for \(configuration.idleTimeoutMillis) ms")
            } else if heartbeatDue(connection, millis) {
                // To a connection that has heard nothing from us, or told us nothing, for a
                // heartbeat: its PONG proves it alive even while it only receives records.
                pingNonce &+= 1
                connection.outbound.append(.ping(nonce: pingNonce))
                connection.lastPing = now
            }
        }
    }

    private func heartbeatDue(_ connection: Connection, _ millis: (UInt64) -> UInt64) -> Bool {
        let heartbeat = UInt64(configuration.heartbeatMillis)
        guard millis(connection.lastPing) >= heartbeat else { return false }
        return millis(connection.lastSent) >= heartbeat || millis(connection.lastReceived) >= heartbeat
    }

    /// Ends the connection with an ERROR frame; the server drains it and closes.
    func fail(_ connection: Connection, _ code: ErrorCode, _ message: String) {
        guard !connection.isClosing else { return }
        errorsSent[code.name, default: 0] += 1
        metrics.protocolError(code)
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
            session.replay?.cancel()
            session.replay = nil
            session.chunk = nil
        default:
            break
        }
        connection.readPaused = false
    }
}

/// Packs records into DELIVER frames within the frame and batch limits; `close()` ends the
/// open frame (before a SKIP, and when filling stops).
struct DeliverFrames {
    let outbound: OutboundBuffer
    let maxFrame: Int
    let maxBatch: Int
    private var mark: OutboundBuffer.FrameMark?
    private var count = 0
    /// What this pass appended: records, their payload bytes, the first one's ingest time.
    private(set) var records = 0
    private(set) var payloadBytes = 0
    private(set) var firstIngest: UInt64 = 0

    init(outbound: OutboundBuffer, maxFrame: Int, maxBatch: Int) {
        self.outbound = outbound
        self.maxFrame = maxFrame
        self.maxBatch = maxBatch
    }

    mutating func append(_ record: UnsafeRawBufferPointer) {
        // A frame's length excludes its 4-byte prefix: that is what max_frame limits.
        if let open = mark, count >= maxBatch || outbound.size(since: open) - Wire.lengthPrefixSize + record.count > maxFrame {
            close()
        }
        if mark == nil {
            mark = outbound.beginBatch(.deliver)
            count = 0
        }
        outbound.append(raw: record)
        count += 1
        if let base = record.baseAddress {
            if records == 0 { firstIngest = DeliveredRecordLayout.ingestNanos(at: base) }
            payloadBytes += DeliveredRecordLayout.payloadLength(at: base)
        }
        records += 1
    }

    mutating func close() {
        guard let open = mark else { return }
        outbound.endBatch(open, count: count)
        mark = nil
    }
}
