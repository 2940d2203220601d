import AllegroLog
import AllegroPosix
import AllegroSpill
import AllegroStore
import AllegroWire
import Atomics

/// The relay's event loop: one thread, level-triggered epoll, owning every socket. It accepts
/// connections, moves bytes between sockets and connection buffers, runs timers, and leaves
/// every protocol decision to `RelayCore`.
///
/// One iteration: wait for readiness (at most 100 ms) → read from ready sockets and let the core
/// handle the frames → settle acks and resume paused producers after commits → fill collectors
/// → write every connection with output → every 100 ms, timeouts, heartbeats and a status for
/// the control plane (`RelayMonitor`).
///
/// Stopping (`Stopper.shutDownGracefully()`, from any thread): stop accepting, read what
/// producers had already sent, wait (at most `shutdown_grace_ms`) until all of it is fsync'd and
/// acknowledged, then end every connection with SHUTTING_DOWN; the spill flushes and saves cursors.
public final class RelayServer {
    public let address: SocketAddress
    /// The state database (session summaries, cursors), shared with the control plane.
    public let store: StateStore
    private let core: RelayCore
    private let spill: SpillPipeline
    private let replays: SpillReplays
    private let log: EventLog
    private let monitor: RelayMonitor
    private let poller: Poller
    private let listener: Socket
    /// The data directory's lock, held as long as this server exists.
    private let dataLock: File
    private let wake: WakeSignal
    private let drainRequested = ManagedAtomic<Bool>(false)
    /// When the graceful stop gives up waiting for producers (0: not draining).
    private var drainDeadline: UInt64 = 0
    private var listening = true
    private let startedAt = Clock.wallNanos

    private var slots: [Connection?] = []
    /// Each slot's socket (closed once its connection is; replaced when the slot is reused).
    private var sockets: [Socket] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    private var openConnections = 0
    private var listenerPausedUntil: UInt64 = 0
    private var now: UInt64 = Clock.monotonicNanos
    private var spillProgressed = false
    private let backlogLimit: Int
    /// Where input from closing connections is read and dropped.
    private let discardBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 8)

    private static let listenerToken = UInt64.max
    private static let wakeToken = UInt64.max - 1
    private static let spillToken = UInt64.max - 2
    private static let replayToken = UInt64.max - 3
    private static let readChunk = 64 * 1024
    private static let lingerNanos: UInt64 = 2_000_000_000
    private static let sweepNanos: UInt64 = 100_000_000

    /// Recovers the data directory (spill and state), starts the spill thread and binds the
    /// listening socket. Throws `RelayConfiguration.Invalid`, `SystemError` or a database error.
    public init(configuration: RelayConfiguration, log: EventLog, monitor: RelayMonitor = RelayMonitor(),
                metrics: RelayMetrics = RelayMetrics()) throws {
        try configuration.validate()
        self.log = log
        self.monitor = monitor
        let resume = try ResumePoint.open(configuration, log: log)
        var configuration = configuration
        configuration.relayID = resume.relayID
        store = resume.store
        dataLock = resume.lock
        spill = try SpillPipeline(settings: configuration.spillSettings, catalog: resume.catalog, lastSpilled: resume.lastSpilled,
                                  durableCollectors: configuration.durableCollectors, cursors: resume.cursors,
                                  accounted: resume.skips.ranges + resume.countedGaps, sink: resume.store,
                                  metrics: metrics.spill, log: log)
        replays = try SpillReplays(pipeline: spill, threads: configuration.replayThreads)
        core = RelayCore(configuration: configuration, log: log, start: resume.coreStart, spill: spill, replays: replays,
                         reservation: resume.store, metrics: metrics)
        backlogLimit = configuration.outputBacklogLimit
        let requested = try SocketAddress(parsing: configuration.listen)
        poller = try Poller(capacity: 512)
        wake = try WakeSignal()
        listener = try Socket.listen(on: requested)
        address = try listener.localAddress()
        try poller.add(listener.descriptor, .readable, token: Self.listenerToken)
        try poller.add(wake.descriptor, .readable, token: Self.wakeToken)
        try poller.add(spill.progress.descriptor, .readable, token: Self.spillToken)
        try poller.add(replays.wake.descriptor, .readable, token: Self.replayToken)
        monitor.attach(wake)
        spill.start(ring: core.ring, gate: core.ring.addGate(from: core.ring.head))
    }

    /// The listener, poller and wake signal close their own descriptors when released (the
    /// listener may already be closed by the graceful stop).
    deinit { discardBuffer.deallocate() }

    /// A handle other threads use to stop this server.
    public var stopper: Stopper { Stopper(server: self) }

    /// Stops a `RelayServer` from any thread.
    public struct Stopper: Sendable {
        private let drain: ManagedAtomic<Bool>
        private let wake: WakeSignal

        fileprivate init(server: RelayServer) {
            drain = server.drainRequested
            wake = server.wake
        }

        /// Starts the graceful stop described on `RelayServer`; `run()` returns when it is done.
        public func shutDownGracefully() {
            drain.store(true, ordering: .releasing)
            wake.signal()
        }
    }

    /// Runs until a graceful stop has finished.
    public func run() throws(SystemError) {
        log.log(.info, "listening", ["address": address.description, "relay_id": core.configuration.relayID,
                                     "durable_collectors": core.configuration.durableCollectors.joined(separator: ",")])
        var busy = false
        var nextSweep = Clock.monotonicNanos + Self.sweepNanos
        var nextPrune = Clock.monotonicNanos + 60_000_000_000
        publishStatus()
        while true {
            if drainDeadline == 0 && drainRequested.load(ordering: .acquiring) { beginDrain() }
            if drainDeadline != 0 && drainFinished() { break }
            try poller.wait(timeoutMillis: busy ? 0 : 100) { event in dispatch(event) }
            now = Clock.monotonicNanos
            if spillProgressed {
                spillProgressed = false
                for connection in core.settleAcks() { resume(connection) }
            }
            busy = deliver()
            flushQueued()
            if now >= nextSweep {
                sweep()
                flushQueued()
                publishStatus()
                nextSweep = now + Self.sweepNanos
            } else if monitor.takeRefreshRequest() {
                publishStatus()
            }
            if now >= nextPrune {
                core.pruneProducers()
                nextPrune = now + 60_000_000_000
            }
        }
        shutDown()
    }

    // MARK: Events

    private func dispatch(_ event: Poller.Event) {
        switch event.token {
        case Self.listenerToken: acceptPending()
        case Self.wakeToken: wake.drain()
        case Self.spillToken:
            spill.progress.drain()
            spillProgressed = true
        case Self.replayToken: replays.wake.drain()
        default:
            let slot = Int(event.token & 0xFFFF_FFFF)
            guard slot < slots.count, let connection = slots[slot], connection.token == event.token else { return }
            // A socket the relay is not reading failed: the peer is gone, and level-triggered
            // epoll would report it again and again.
            if event.failed && !connection.isClosing && !connection.wantsInput(backlogLimit: backlogLimit) {
                return close(connection)
            }
            if event.readable || event.failed { readable(connection) }
            if event.writable && !connection.closed { flush(connection) }
        }
    }

    private func acceptPending() {
        for _ in 0 ..< 128 {
            switch listener.accept() {
            case .wouldBlock:
                return
            case let .failed(error):
                log.log(.warning, "accept_failed", ["error": error.description])
                if error.isOutOfDescriptors {
                    // Out of descriptors: stop listening for a moment instead of spinning.
                    listenerPausedUntil = Clock.monotonicNanos + Self.sweepNanos
                    try? poller.modify(listener.descriptor, [], token: Self.listenerToken)
                }
                return
            case let .accepted(socket, peer):
                guard openConnections < core.configuration.maxConnections else {
                    refuse(socket)
                    continue
                }
                admit(socket, peer: peer?.description ?? "?")
            }
        }
    }

    private static let tooManyConnections: [UInt8] = {
        let buffer = OutboundBuffer(initialCapacity: 128)
        buffer.append(.error(.tooManyConnections, "the relay is at its connection limit; retry later"))
        return buffer.bytes
    }()

    private func refuse(_ socket: Socket) {
        Self.tooManyConnections.withUnsafeBytes { _ = try? socket.send($0) }
        socket.close()
    }

    private func admit(_ socket: Socket, peer: String) {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            sockets[slot] = socket
        } else {
            slot = slots.count
            slots.append(nil)
            sockets.append(socket)
            generations.append(0)
        }
        let token = UInt64(generations[slot]) << 32 | UInt64(slot)
        let connection = Connection(token: token, peer: peer, now: Clock.monotonicNanos)
        do {
            try poller.add(socket.descriptor, .readable, token: token)
        } catch {
            log.log(.warning, "register_failed", ["peer": peer, "error": error.description])
            socket.close()
            freeSlots.append(slot)
            return
        }
        slots[slot] = connection
        openConnections += 1
    }

    private func readable(_ connection: Connection) {
        if connection.isClosing { return discardInput(connection) }
        guard connection.wantsInput(backlogLimit: backlogLimit) else { return }
        // A paused producer's interrupted batch holds views into its inbound buffer: reading
        // into it (which may move its bytes) waits until the core resumed it.
        assert(!connection.readPaused, "read into the inbound buffer of a paused producer")
        // Stopping: read only what the producer had sent when the stop began.
        let limit = drainDeadline != 0 ? min(connection.drainBudget, Self.readChunk) : Self.readChunk
        guard limit > 0 else { return endInput(connection) }
        let space = connection.inbound.writableSpace(minimum: 16 * 1024)
        let result: IOResult
        do {
            result = try socket(connection).receive(into: UnsafeMutableRawBufferPointer(rebasing: space.prefix(limit)))
        } catch {
            log.log(.info, "receive_failed", ["peer": connection.peer, "error": error.description])
            return close(connection)
        }
        switch result {
        case let .transferred(count):
            connection.inbound.didWrite(count)
            connection.lastReceived = now
            if drainDeadline != 0 {
                connection.drainBudget -= count
                if connection.drainBudget <= 0 { connection.inputEnded = true }
            }
            core.received(connection, now: Moment.now)
            updateInterest(connection)
        case .wouldBlock:
            if drainDeadline != 0 { endInput(connection) }
        case .closed:
            flush(connection)
            close(connection)
        }
    }

    /// A closing connection: read and drop whatever the peer still sends until it closes, so
    /// our close does not turn into a reset that destroys the ERROR frame in flight.
    private func discardInput(_ connection: Connection) {
        let result = try? socket(connection).receive(into: discardBuffer)
        switch result {
        case .transferred?, .wouldBlock?: return
        case .closed?, nil: close(connection)
        }
    }

    // MARK: Output

    /// Fills every subscribed collector and writes it. Returns true when some collector could
    /// take more right away (the loop then polls without sleeping).
    private func deliver() -> Bool {
        var busy = false
        let moment = Moment.now
        for connection in core.collectors {
            var rounds = 0
            var more = true
            while more && rounds < 4 && !connection.waitingWritable && !connection.closed {
                more = core.fill(connection, now: moment)
                flush(connection)
                rounds += 1
            }
            if more && !connection.waitingWritable && !connection.closed { busy = true }
        }
        return busy
    }

    private func flushQueued() {
        while let connection = core.flushQueue.popLast() {
            connection.queuedForFlush = false
            if !connection.closed { flush(connection) }
        }
    }

    private func flush(_ connection: Connection) {
        let outbound = connection.outbound
        while !outbound.isEmpty {
            let result: IOResult
            do {
                result = try socket(connection).send(outbound.readable)
            } catch {
                log.log(.info, "send_failed", ["peer": connection.peer, "error": error.description])
                return close(connection)
            }
            switch result {
            case let .transferred(count):
                outbound.consume(count)
                connection.lastSent = now
            case .wouldBlock:
                connection.waitingWritable = true
                updateInterest(connection)
                return
            case .closed:
                return close(connection)
            }
        }
        connection.waitingWritable = false
        if connection.isClosing && !connection.sentFin {
            connection.sentFin = true
            socket(connection).shutdownWrite()
            if connection.lingerDeadline == 0 { connection.lingerDeadline = now + Self.lingerNanos }
        }
        updateInterest(connection)
    }

    private func updateInterest(_ connection: Connection) {
        guard !connection.closed else { return }
        var wanted: Poller.Interest = connection.wantsInput(backlogLimit: backlogLimit) || connection.isClosing ? .readable : []
        if connection.waitingWritable { wanted.insert(.writable) }
        guard wanted != connection.interest else { return }
        do {
            try poller.modify(socket(connection).descriptor, wanted, token: connection.token)
            connection.interest = wanted
        } catch {
            log.log(.warning, "poller_modify_failed", ["peer": connection.peer, "error": error.description])
            close(connection)
        }
    }

    /// A producer paused by a full ring: finish its interrupted batch and, if that fit, read again.
    private func resume(_ connection: Connection) {
        guard !connection.closed else { return }
        connection.lastReceived = now
        core.resume(connection, now: Moment.now)
        updateInterest(connection)
    }

    // MARK: Timers and closing

    private func sweep() {
        if listenerPausedUntil != 0 && now >= listenerPausedUntil {
            listenerPausedUntil = 0
            try? poller.modify(listener.descriptor, .readable, token: Self.listenerToken)
        }
        // Producers paused by a full ring resume here too when room appeared without a commit
        // (a durable collector reading ahead of its cursor).
        for connection in core.producers where connection.readPaused { resume(connection) }
        for case let connection? in slots {
            if connection.isClosing {
                if connection.lingerDeadline == 0 { connection.lingerDeadline = now + Self.lingerNanos }
                if now >= connection.lingerDeadline { close(connection) }
            } else {
                core.sweep(connection, now: now)
                if !connection.outbound.isEmpty { core.touch(connection) }
            }
        }
    }

    /// The connection's socket (the server's; the core never sees it).
    private func socket(_ connection: Connection) -> Socket { sockets[connection.slot] }

    private func close(_ connection: Connection) {
        guard !connection.closed else { return }
        core.retire(connection)
        connection.closed = true
        poller.remove(socket(connection).descriptor)
        socket(connection).close()
        let slot = connection.slot
        slots[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
        openConnections -= 1
    }

    private func shutDown() {
        publishStatus(stopping: true)
        log.log(.info, "stopping", ["connections": String(openConnections)])
        for case let connection? in slots where !connection.isClosing {
            core.fail(connection, .shuttingDown, "the relay is stopping; reconnect later")
        }
        for case let connection? in slots { flush(connection) }
        for case let connection? in slots { close(connection) }
        replays.pool.stop()
        // Everything accepted goes to the spill and is fsync'd before the process exits.
        if !spill.stop(timeoutSeconds: 30) {
            log.log(.error, "spill_not_flushed", ["reason": spill.failure ?? "timed out",
                                                  "effect": "unacknowledged records will be resent by their producers"])
        }
        log.log(.info, "stopped")
    }

    // MARK: Status and graceful stop

    private func publishStatus(stopping: Bool = false) {
        var status = core.status(openConnections: openConnections, now: Moment.now)
        status.state = stopping || drainDeadline != 0 ? "stopping" : "serving"
        status.listen = address.description
        status.startedAtNanos = startedAt
        status.publishedAtNanos = Clock.wallNanos
        monitor.publish(status)
    }

    /// Stops accepting and marks every producer to be read until its socket is empty; a
    /// connection not yet identified, and collectors, are no longer read.
    private func beginDrain() {
        let grace = UInt64(core.configuration.shutdownGraceMillis) * 1_000_000
        drainDeadline = Clock.monotonicNanos + max(grace, 1)
        if listening {
            poller.remove(listener.descriptor)
            listener.close()
            listening = false
        }
        publishStatus()
        log.log(.info, "draining", ["producers": String(core.producers.count),
                                    "grace_ms": String(core.configuration.shutdownGraceMillis)])
        for case let connection? in slots where !connection.isClosing {
            // A producer is read for as many bytes as wait in its socket now; collectors and
            // peers still in the handshake are not read again.
            connection.drainBudget = connection.isProducer ? socket(connection).pendingInputBytes : 0
            if connection.drainBudget == 0 { endInput(connection) }
        }
    }

    private func endInput(_ connection: Connection) {
        guard !connection.inputEnded else { return }
        connection.inputEnded = true
        updateInterest(connection)
    }

    /// Everything producers sent before the stop is in, fsync'd and acknowledged (or the grace
    /// period is over).
    private func drainFinished() -> Bool {
        if Clock.monotonicNanos >= drainDeadline {
            if core.configuration.shutdownGraceMillis > 0 {
                log.log(.warning, "drain_timed_out", ["effect": "records not yet acknowledged will be resent by their producers"])
            }
            return true
        }
        for connection in core.producers {
            if !connection.inputEnded || connection.readPaused || !connection.outbound.isEmpty { return false }
            if case let .producer(session) = connection.state, session.hasPending { return false }
        }
        return core.recordsAwaitingFsync == 0
    }
}
