import AllegroPosix
import AllegroSpill
import AllegroWire

/// One client connection's protocol state: its buffers and where it is in the protocol. Owned by
/// the I/O thread; the relay core reads frames from `inbound` and writes answers to `outbound`.
/// It holds no descriptor: the server keeps each connection's socket (by `slot`), so the core
/// can be driven with connections that have none.
final class Connection {
    enum State {
        /// Accepted; waiting for HELLO.
        case handshake
        case producer(ProducerSession)
        case collector(CollectorSession)
        /// Its last frames (an ERROR or GOODBYE) are queued; the relay drains them, sends FIN,
        /// and closes once the peer closes or the linger deadline passes.
        case closing
    }

    /// The server's poller token: generation in the high 32 bits, slot in the low.
    let token: UInt64
    let peer: String
    let inbound: InboundBuffer
    let outbound = OutboundBuffer(initialCapacity: 16 * 1024)
    var state: State = .handshake

    let acceptedAt: UInt64
    var lastReceived: UInt64
    var lastSent: UInt64
    /// When the relay last sent this connection a PING.
    var lastPing: UInt64 = 0
    /// The relay stopped reading this producer because the ring is full (backpressure). Set and
    /// cleared by `RelayCore` only (`ingest`, `resume`, `retire`); the server asks.
    var readPaused = false
    /// The relay is stopping and has read everything this peer sent before it began to.
    var inputEnded = false
    /// The peer said GOODBYE: nothing more is read, and the relay answers GOODBYE once the
    /// ACKs (or COMMITTED) due are sent, or at this monotonic deadline (0: no GOODBYE yet).
    var goodbyeDeadline: UInt64 = 0
    /// While stopping: bytes still to read (what was waiting when the stop began).
    var drainBudget = 0
    /// EPOLLOUT is armed because the kernel's send buffer was full.
    var waitingWritable = false
    /// Queued on the relay's flush list.
    var queuedForFlush = false
    /// When a closing connection is closed regardless of its peer.
    var lingerDeadline: UInt64 = 0
    var sentFin = false
    /// What the poller is asked to report for this connection now.
    var interest: Poller.Interest = .readable
    var closed = false

    init(token: UInt64, peer: String, now: UInt64) {
        self.token = token
        self.peer = peer
        inbound = InboundBuffer(limits: .handshake, initialCapacity: 4096)
        acceptedAt = now
        lastReceived = now
        lastSent = now
    }

    /// The server's slot for this connection (where its socket is kept).
    var slot: Int { Int(token & 0xFFFF_FFFF) }

    /// Whether the relay reads this connection now: not while its producer is paused by a full
    /// ring, nor while more than `backlogLimit` bytes wait to be sent to it.
    func wantsInput(backlogLimit: Int) -> Bool {
        !readPaused && !inputEnded && outbound.count < backlogLimit
    }

    var isProducer: Bool {
        if case .producer = state { return true }
        return false
    }

    var isClosing: Bool {
        if case .closing = state { return true }
        return false
    }

    var roleName: String {
        switch state {
        case .handshake: "handshake"
        case .producer: "producer"
        case .collector: "collector"
        case .closing: "closing"
        }
    }
}

/// What the relay remembers about one producer id across its connections: its dedup mark (the
/// highest producer sequence accepted, whose relay sequence a resend is acked with).
final class ProducerState {
    let id: [UInt8]
    /// Read and advanced per record, on the I/O thread only (as all of this type): no runtime
    /// exclusivity check.
    @exclusivity(unchecked) var mark: ProducerMark
    var connections = 0

    init(id: [UInt8]) {
        self.id = id
        mark = ProducerMark(producer: id)
    }
}

/// A producer connection's session: its producer's state, the acks it is owed, and a batch
/// interrupted by backpressure.
final class ProducerSession {
    let producer: ProducerState
    /// (relay sequence that must be safe, producer sequence to ack then), oldest first.
    /// Appended per record on the I/O thread only: no runtime exclusivity check.
    @exclusivity(unchecked) private var pending: [(relay: UInt64, producer: UInt64)] = []
    @exclusivity(unchecked) private var pendingStart = 0
    /// Highest producer sequence acked on this connection.
    var ackedThrough: UInt64 = 0
    /// Highest producer sequence that is safe and may be acked.
    var safeThrough: UInt64 = 0
    /// A PUBLISH whose records from `resumeAt` on are not yet ingested (the ring was full).
    var interrupted: (batch: PublishBatch, resumeAt: Int, ingestNanos: UInt64)?

    init(producer: ProducerState) { self.producer = producer }

    var hasPending: Bool { pendingStart < pending.count }

    /// Notes that producer sequences through `producerSequence` become safe once relay
    /// sequence `relaySequence` is.
    func expect(relay relaySequence: UInt64, producer producerSequence: UInt64) {
        if let last = pending.last, pendingStart < pending.count, last.relay == relaySequence {
            pending[pending.count - 1].producer = producerSequence
        } else {
            pending.append((relaySequence, producerSequence))
        }
    }

    /// Moves every pending entry whose relay sequence is at or below `safeRelay` to safe.
    func settle(safeRelay: UInt64) {
        while pendingStart < pending.count, pending[pendingStart].relay <= safeRelay {
            safeThrough = max(safeThrough, pending[pendingStart].producer)
            pendingStart += 1
        }
        if pendingStart == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        } else if pendingStart > 4096 && pendingStart * 2 > pending.count {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
    }
}

/// A collector connection's session: its subscription, cursor and credit.
final class CollectorSession {
    var subscribed = false
    /// The next relay sequence to deliver.
    var cursor: UInt64 = 0
    /// Records the collector will still accept.
    var credit: UInt64 = 0
    var durable: DurableCollector?
    /// Asked for records before they are fsync'd (ephemeral only); otherwise it is given only
    /// records at or below the spill's durable point, so nothing it saw can be forgotten.
    var live = false
    /// The highest COMMIT on this connection not yet answered: COMMITTED goes out once the
    /// durable collector's saved cursor reaches it (nil: none waiting).
    var commitAwaited: UInt64?
    /// While the cursor is older than the ring: the spill reader feeding it, and the chunk of
    /// records being copied out (from `chunkOffset`).
    var replay: (any ReplayStream)?
    var chunk: ReplayChunk?
    var chunkOffset = 0

    /// The last relay sequence delivered on this connection (0 before the first).
    var lastDelivered: UInt64 { cursor &- 1 }
}

/// A configured durable collector: its committed cursor lives while the relay runs, whether or
/// not it is connected, and records it has not committed are held.
final class DurableCollector {
    let name: String
    /// The cursor in force (retention and status count from it).
    var committed: UInt64 = 0
    /// The cursor as saved in the state database: what COMMITTED answers, and where a restart
    /// resumes.
    var saved: UInt64 = 0
    /// The connection currently subscribed under this name.
    var connection: Connection?

    init(name: String) { self.name = name }
}
