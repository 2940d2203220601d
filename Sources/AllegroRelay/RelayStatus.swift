import AllegroPosix
import Atomics
import Synchronization

/// What the relay is doing, as the event loop last published it (every 100 ms): the `/status`
/// document, the source of `/health` and of the state gauges in `/metrics`.
public struct RelayStatus: Codable, Sendable, Equatable {
    public struct Connections: Codable, Sendable, Equatable {
        /// Accepted, HELLO not yet received.
        public var handshaking = 0
        public var producers = 0
        public var collectors = 0
    }

    public struct Ring: Codable, Sendable, Equatable {
        public var records: UInt64 = 0
        public var bytes = 0
        public var recordCapacity = 0
        public var byteCapacity = 0
    }

    public struct Spill: Codable, Sendable, Equatable {
        public var bytes = 0
        public var segments = 0
        /// The oldest relay sequence in the spill (nil: empty).
        public var oldestSequence: UInt64?
        /// When the oldest record in the spill was accepted, in Unix nanoseconds (nil: empty).
        public var oldestIngestNanos: UInt64?
        /// Every record at or below this is fsync'd (and acknowledged, or about to be).
        public var durableThrough: UInt64 = 0
        /// Why the spill cannot write, while it cannot.
        public var failure: String?
    }

    /// One collector: every configured durable collector (connected or not) and every
    /// connected ephemeral subscription.
    public struct Collector: Codable, Sendable, Equatable {
        /// The durable name; empty for an ephemeral subscription.
        public var name: String
        public var durable: Bool
        public var connected: Bool
        public var peer: String?
        /// The next relay sequence to deliver on its connection (nil when not connected).
        public var cursor: UInt64?
        /// The committed cursor (durable collectors).
        public var committed: UInt64?
        /// Records it has not yet committed (durable) or not yet been sent (ephemeral).
        public var lagRecords: UInt64
        /// Age of the oldest of those records, in seconds (0 when none).
        public var lagSeconds: Double

        public init(name: String, durable: Bool, connected: Bool, peer: String?, cursor: UInt64?, committed: UInt64?,
                    lagRecords: UInt64, lagSeconds: Double) {
            self.name = name
            self.durable = durable
            self.connected = connected
            self.peer = peer
            self.cursor = cursor
            self.committed = committed
            self.lagRecords = lagRecords
            self.lagSeconds = lagSeconds
        }
    }

    public struct Traffic: Codable, Sendable, Equatable {
        public var recordsIn: UInt64 = 0
        public var recordsOut: UInt64 = 0
        public var duplicates: UInt64 = 0
    }

    public struct Retention: Codable, Sendable, Equatable {
        /// Records removed before every durable collector had committed them.
        public var droppedRecords: UInt64 = 0
        public var removedSegments: UInt64 = 0
    }

    /// What the start-up recovery of this run found (`SPILL.md`, Recovery at start).
    public struct Recovery: Codable, Sendable, Equatable {
        /// Records gone from the spill at or below the last fsync'd checkpoint.
        public var lostRecords: UInt64 = 0
        /// Numbers gone from the spill past that checkpoint (at most the last moments before a
        /// crash; producers resend what was not acknowledged).
        public var unconfirmedRecords: UInt64 = 0
        /// Entries and byte ranges moved to quarantine or renamed aside.
        public var setAside = 0
        /// Segments renamed and headers rewritten, with no record lost.
        public var repaired = 0
        /// `state.sqlite` could not be read, was set aside and rebuilt from the spill.
        public var stateRebuilt = false
        /// Records found damaged later, when a replay read a sealed segment that start-up
        /// trusted without reading (SPILL.md).
        public var lostOnRead: UInt64 = 0
    }

    public var relayID = ""
    /// "serving", or "stopping" once a shutdown began.
    public var state = "serving"
    public var listen = ""
    public var startedAtNanos: UInt64 = 0
    public var publishedAtNanos: UInt64 = 0
    /// The next relay sequence to be assigned.
    public var nextSequence: UInt64 = 0
    /// Records accepted but not yet fsync'd in the spill: acks not yet possible.
    public var acksOutstanding: UInt64 = 0
    public var connections = Connections()
    public var ring = Ring()
    public var spill = Spill()
    public var collectors: [Collector] = []
    public var traffic = Traffic()
    public var retention = Retention()
    public var recovery = Recovery()
    /// ERROR frames sent since start, by code name.
    public var errors: [String: UInt64] = [:]

    public init() {}

    // Spelled out so that `relay_id` survives a snake_case round trip (`relayId` otherwise).
    enum CodingKeys: String, CodingKey {
        case relayID = "relayId"
        case state, listen, startedAtNanos, publishedAtNanos, nextSequence, acksOutstanding, connections, ring, spill
        case collectors, traffic, retention, recovery, errors
    }
}

/// Whether the relay can do its job now.
public enum RelayHealth: Sendable, Equatable {
    case serving
    /// It cannot accept records safely (the reason says why).
    case failing(String)
    case stopping
}

/// Where the event loop publishes `RelayStatus` and the control plane reads it. Safe from any
/// thread. The loop publishes every 100 ms, and at once when `fresh()` asks.
public final class RelayMonitor: Sendable {
    private let latest = Mutex<RelayStatus?>(nil)
    private let publishedAt = ManagedAtomic<UInt64>(0)
    private let refreshWanted = ManagedAtomic<Bool>(false)
    private let wakeLoop = Mutex<WakeSignal?>(nil)

    /// A status older than this means the event loop is stuck.
    public static let staleNanos: UInt64 = 5_000_000_000

    public init() {}

    /// The last status published (at most about 100 ms old).
    public var status: RelayStatus? { latest.withLock { $0 } }

    /// Asks the event loop for a status as of now and waits for it (at most 100 ms; then the
    /// last one published).
    public func fresh() async -> RelayStatus? {
        let before = publishedAt.load(ordering: .acquiring)
        refreshWanted.store(true, ordering: .releasing)
        wakeLoop.withLock { $0 }?.signal()
        for _ in 0 ..< 1000 where publishedAt.load(ordering: .acquiring) == before {
            try? await Task.sleep(nanoseconds: 100_000)
        }
        return status
    }

    /// The event loop's wake-up, so `fresh()` need not wait for the next 100 ms tick.
    func attach(_ wake: WakeSignal) { wakeLoop.withLock { $0 = wake } }

    /// True (once) when `fresh()` asked for a status.
    func takeRefreshRequest() -> Bool {
        refreshWanted.load(ordering: .relaxed) && refreshWanted.exchange(false, ordering: .acquiring)
    }

    func publish(_ status: RelayStatus) {
        latest.withLock { $0 = status }
        publishedAt.store(Clock.monotonicNanos, ordering: .releasing)
    }

    public var health: RelayHealth {
        guard let status else { return .failing("the relay is starting") }
        if status.state == "stopping" { return .stopping }
        if let failure = status.spill.failure { return .failing(failure) }
        let age = Clock.monotonicNanos &- publishedAt.load(ordering: .acquiring)
        if age > Self.staleNanos {
            return .failing("the event loop has not reported for \(age / 1_000_000_000) s")
        }
        return .serving
    }
}
