@testable import AllegroRelay
import AllegroLog
import AllegroRing
import AllegroSpill
import AllegroWire

/// The spill as the core sees it, stepped by hand: nothing is fsync'd until the test says so.
final class SteppedSpill: SpillProgress {
    var safeThrough: UInt64 = 0
    var oldestSpilledSequence: UInt64?
    /// Commits the core handed over, by collector.
    var commits: [String: UInt64] = [:]
    /// Cursors "saved" (the test saves them with `CoreHarness.saveCursors`).
    var saved: [String: UInt64] = [:]
    var forced = SkippedSequences()
    var forcedRecords: UInt64 = 0

    /// How often the core said it appended records (each call may wake the spill thread).
    var appendedCalls = 0

    func recordsAppended() { appendedCalls += 1 }
    func committed(_ name: String, through: UInt64) { commits[name] = max(commits[name] ?? 0, through) }
    func savedCursor(_ name: String) -> UInt64 { saved[name] ?? 0 }
    func countForcedLoss(_ range: ClosedRange<UInt64>) -> UInt64 {
        let fresh = range.upperBound - range.lowerBound + 1 - forced.count(in: range)
        forced.insert(range)
        forcedRecords += fresh
        return fresh
    }
    func snapshot() -> SpillSnapshot { SpillSnapshot() }
}

/// Sequence reservation in memory; `failing` makes the next reservations throw.
final class MemoryReservation: SequenceReservation {
    struct Refused: Error {}
    var through: UInt64
    var failing = false
    var calls = 0

    init(through: UInt64) { self.through = through }

    func reserve(through: UInt64) throws {
        calls += 1
        guard !failing else { throw Refused() }
        self.through = through
    }
}

/// Replays the test serves block by block from what the harness "spilled". Blocks hold
/// `blockRecords` records, numbered from 1, and a replay starts with the whole block holding its
/// first sequence, as the spill reader does: the core must drop what lies before its cursor.
final class ScriptedReplays: ReplaySource {
    private(set) var opened: [ScriptedReplay] = []
    /// What the fake spill holds: record bytes in DELIVER layout by relay sequence.
    var spilled: [UInt64: [UInt8]] = [:]
    static let blockRecords: UInt64 = 10

    func replay(from sequence: UInt64, live: Bool) -> any ReplayStream {
        let blockStart = sequence == 0 ? 0 : (sequence - 1) / Self.blockRecords * Self.blockRecords + 1
        let stream = ScriptedReplay(from: sequence, blockStart: blockStart, live: live) { [unowned self] in self.spilled }
        opened.append(stream)
        return stream
    }
}

/// One replay: `serve(records:)` hands over the next spilled records as one chunk (a block);
/// `finish()` ends it, having read everything spilled through `readThrough`.
final class ScriptedReplay: ReplayStream {
    let from: UInt64
    let live: Bool
    private let spilled: () -> [UInt64: [UInt8]]
    private var position: UInt64
    private var ready: [ReplayChunk] = []
    private(set) var finished = false
    private(set) var cancelled = false
    private(set) var recycled = 0
    var readThrough: UInt64 = 0

    init(from: UInt64, blockStart: UInt64, live: Bool, spilled: @escaping () -> [UInt64: [UInt8]]) {
        self.from = from
        self.live = live
        self.spilled = spilled
        position = blockStart
    }

    /// Serves up to `records` spilled records from where the replay is, skipping numbers the
    /// spill does not have (as a block boundary would), as one chunk.
    func serve(records: Int) {
        let held = spilled()
        var bytes: [UInt8] = []
        var taken = 0
        let last = held.keys.max() ?? 0
        while taken < records, position <= last {
            if let record = held[position] {
                bytes += record
                taken += 1
            }
            position += 1
        }
        let chunk = ReplayChunk()
        bytes.withUnsafeBytes { chunk.fill($0) }
        ready.append(chunk)
    }

    /// Everything spilled up to `through` (default: the last spilled) was read.
    func finish(readThrough through: UInt64? = nil) {
        readThrough = through ?? (spilled().keys.max() ?? 0)
        finished = true
    }

    func take() -> ReplayChunk? { ready.isEmpty ? nil : ready.removeFirst() }
    func recycle(_ chunk: ReplayChunk) { recycled += 1 }
    var isDrained: Bool { finished && ready.isEmpty }
    func cancel() { cancelled = true }
}

/// A relay core in-process with stepped inputs: a fake spill whose fsync the test performs
/// (`fsync(through:)` copies ring records into `spilled`, publishes, frees the ring as the
/// spill thread's gate would), memory reservations, scripted replays, and a clock the test moves.
final class CoreHarness {
    let core: RelayCore
    let spill = SteppedSpill()
    let reservation: MemoryReservation
    let replays = ScriptedReplays()
    /// What the fake spill holds: record bytes in DELIVER layout by relay sequence.
    private(set) var spilled: [UInt64: [UInt8]] {
        get { replays.spilled }
        set { replays.spilled = newValue }
    }
    private let gate: RingGate
    var now = Moment(wallNanos: 1_700_000_000_000_000_000, monotonicNanos: 1_000_000_000)
    private var nextToken: UInt64 = 1

    /// `spilled`: what an earlier run left in the spill (records in DELIVER layout by sequence).
    init(configure: (inout RelayConfiguration) -> Void = { _ in }, start: CoreStart = CoreStart(firstSequence: 1, reservedThrough: 1 << 20),
         spilled earlier: [UInt64: [UInt8]] = [:]) {
        var configuration = RelayConfiguration()
        configuration.ringBytes = 64 << 10
        configuration.ringRecords = 1 << 10
        configure(&configuration)
        reservation = MemoryReservation(through: start.reservedThrough)
        core = RelayCore(configuration: configuration, log: EventLog(minimum: .critical), start: start, spill: spill,
                         replays: replays, reservation: reservation, metrics: RelayMetrics())
        gate = core.ring.addGate(from: core.ring.head)
        spill.safeThrough = start.firstSequence - 1
        replays.spilled = earlier
        spill.oldestSpilledSequence = earlier.keys.min()
    }

    /// A new connection, in the handshake.
    func connect(peer: String = "test") -> Peer {
        defer { nextToken += 1 }
        return Peer(harness: self, connection: Connection(token: nextToken, peer: peer, now: now.monotonicNanos))
    }

    /// The spill wrote and fsync'd everything through `through` (at most what was accepted):
    /// publishes it, lets the ring reclaim it, and settles acks as the event loop would.
    func fsync(through: UInt64) {
        let last = min(through, core.ring.head - 1)
        var sequence = spill.safeThrough + 1
        while sequence <= last {
            spilled[sequence] = Array(core.ring.record(sequence))
            sequence += 1
        }
        if spill.oldestSpilledSequence == nil, let first = spilled.keys.min() { spill.oldestSpilledSequence = first }
        spill.safeThrough = max(spill.safeThrough, last)
        gate.advance(to: spill.safeThrough + 1)
        settle()
    }

    /// Everything accepted so far is fsync'd.
    func fsyncAll() { fsync(through: core.ring.head - 1) }

    /// The spill saved every commit handed to it.
    func saveCursors() {
        for (name, through) in spill.commits { spill.saved[name] = through }
        settle()
    }

    /// What the event loop does after the spill's progress: acks, COMMITTED, paused producers resume.
    func settle() {
        for connection in core.settleAcks() { core.resume(connection, now: now) }
    }

    /// Retention removed every spilled record through `through`.
    func removeSpilled(through: UInt64) {
        spilled = spilled.filter { $0.key > through }
        spill.oldestSpilledSequence = spilled.keys.min() ?? (spill.safeThrough + 1)
    }
}

/// One fake client connection on the core: frames go in through its inbound buffer, answers
/// are decoded from its outbound buffer.
final class Peer {
    let harness: CoreHarness
    let connection: Connection
    private var producerSequence: UInt64 = 0

    init(harness: CoreHarness, connection: Connection) {
        self.harness = harness
        self.connection = connection
    }

    var core: RelayCore { harness.core }

    /// Feeds `bytes` as if they arrived on the socket, and lets the core handle them.
    func deliver(bytes: [UInt8]) {
        let space = connection.inbound.writableSpace(minimum: bytes.count)
        bytes.withUnsafeBytes { source in
            if let to = space.baseAddress, let from = source.baseAddress { to.copyMemory(from: from, byteCount: bytes.count) }
        }
        connection.inbound.didWrite(bytes.count)
        core.received(connection, now: harness.now)
    }

    func send(_ frames: ControlFrame...) {
        let buffer = OutboundBuffer(initialCapacity: 256)
        for frame in frames { buffer.append(frame) }
        deliver(bytes: buffer.bytes)
    }

    func hello(_ role: Role, id: String = "p1", token: String = "") {
        send(.hello(role: role, clientID: id, token: token))
    }

    /// One PUBLISH of records with the given producer sequences (default: the next `count`).
    func publish(count: Int = 1, sequences: [UInt64]? = nil, payload: String = "x") {
        let numbers = sequences ?? (0 ..< count).map { _ in
            producerSequence += 1
            return producerSequence
        }
        let buffer = OutboundBuffer(initialCapacity: 1024)
        let mark = buffer.beginBatch(.publish)
        let empty: [UInt8] = [], kind = Array("k".utf8), body = Array(payload.utf8)
        for number in numbers {
            empty.withUnsafeBytes { none in
                kind.withUnsafeBytes { kindBytes in
                    body.withUnsafeBytes { payloadBytes in
                        try? buffer.appendPublishRecord(RecordHeader(producerSequence: number, eventTimeNanos: 1),
                                                        session: none, kind: kindBytes, contentType: none, payload: payloadBytes)
                    }
                }
            }
        }
        buffer.endBatch(mark, count: numbers.count)
        deliver(bytes: buffer.bytes)
    }

    /// Asks the core to fill this collector (as the event loop does each iteration).
    @discardableResult
    func fill() -> Bool { core.fill(connection, now: harness.now) }

    /// The frames the core queued for this connection since the last call (taken out).
    func answers() -> [Answer] {
        let outbound = connection.outbound
        let bytes = Array(outbound.readable)
        outbound.consume(bytes.count)
        var found: [Answer] = []
        let decoder = InboundBuffer(limits: DecodeLimits(maxFrameLength: Wire.absoluteMaxFrameLength, maxBatchRecords: 1 << 20))
        let failure: String? = bytes.withUnsafeBytes { chunk in
            do throws(WireError) {
                try decoder.decodeAll(chunk) { frame in found.append(Answer(frame)) }
                return nil
            } catch {
                return error.description
            }
        }
        if let failure { found.append(.undecodable(failure)) }
        return found
    }
}

/// A frame the core sent, reduced to what tests compare.
enum Answer: Equatable, CustomStringConvertible {
    case welcome
    case ack(UInt64)
    case subscribed(first: UInt64, head: UInt64, committed: UInt64)
    /// The relay sequences and payloads of one DELIVER frame.
    case deliver([UInt64])
    case committed(UInt64)
    case skip(UInt64, UInt64)
    case ping
    case pong(UInt64)
    case goodbye
    case error(String)
    case other(String)
    case undecodable(String)

    init(_ frame: Frame) {
        switch frame {
        case .welcome: self = .welcome
        case let .ack(through): self = .ack(through)
        case let .subscribed(s): self = .subscribed(first: s.firstSequence, head: s.headSequence, committed: s.committed)
        case let .deliver(batch): self = .deliver(batch.map(\.relaySequence))
        case let .committed(through): self = .committed(through)
        case let .skip(first, last): self = .skip(first, last)
        case .ping: self = .ping
        case let .pong(nonce): self = .pong(nonce)
        case .goodbye: self = .goodbye
        case let .error(code, _): self = .error(ErrorCode(rawValue: code)?.name ?? "code \(code)")
        default: self = .other(frame.type.name)
        }
    }

    var description: String {
        switch self {
        case .welcome: "WELCOME"
        case let .ack(through): "ACK \(through)"
        case let .subscribed(first, head, committed): "SUBSCRIBED \(first) head \(head) committed \(committed)"
        case let .deliver(sequences): "DELIVER \(sequences)"
        case let .committed(through): "COMMITTED \(through)"
        case let .skip(first, last): "SKIP \(first)...\(last)"
        case .ping: "PING"
        case let .pong(nonce): "PONG \(nonce)"
        case .goodbye: "GOODBYE"
        case let .error(name): "ERROR \(name)"
        case let .other(name): name
        case let .undecodable(why): "undecodable: \(why)"
        }
    }
}

extension [Answer] {
    /// Every relay sequence delivered, in order, across DELIVER frames.
    var delivered: [UInt64] {
        flatMap { answer -> [UInt64] in
            if case let .deliver(sequences) = answer { return sequences }
            return []
        }
    }
    /// Everything but DELIVER frames.
    var control: [Answer] { filter { if case .deliver = $0 { false } else { true } } }
}
