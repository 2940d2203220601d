import AllegroPosix
import AllegroSpill
import AllegroWire

extension RelayCore {
    /// The relay as it stands, for `RelayMonitor`. Runs on the event loop (every 100 ms).
    func status(openConnections: Int, now moment: Moment) -> RelayStatus {
        var status = RelayStatus()
        status.relayID = configuration.relayID
        let head = ring.head, durableThrough = safeRelaySequence
        status.nextSequence = head
        status.acksOutstanding = recordsAwaitingFsync
        status.connections.producers = producers.count
        status.connections.collectors = collectors.count
        status.connections.handshaking = max(0, openConnections - producers.count - collectors.count)
        status.ring = .init(records: UInt64(ring.count), bytes: ring.bytesInUse, recordCapacity: ring.slotCapacity,
                            byteCapacity: ring.byteCapacity)
        let spilled = spill.snapshot()
        let segments = spilled.segments
        let oldest = segments.first { !$0.isEmpty }
        status.spill = .init(bytes: segments.reduce(0) { $0 + $1.bytes }, segments: segments.count,
                             oldestSequence: oldest?.firstSequence, oldestIngestNanos: oldest?.firstIngestNanos,
                             durableThrough: durableThrough, failure: spilled.failure)
        let now = moment.wallNanos
        for durable in durables {
            var cursor: UInt64?
            var peer: String?
            if let connection = durable.connection, case let .collector(session) = connection.state {
                cursor = session.cursor
                peer = connection.peer
            }
            let waiting = max(durable.committed + 1, earliestSequence)
            status.collectors.append(.init(name: durable.name, durable: true, connected: cursor != nil, peer: peer,
                                           cursor: cursor, committed: durable.committed,
                                           lagRecords: head > waiting ? head - waiting : 0,
                                           lagSeconds: age(of: waiting, head: head, now: now, segments: segments)))
        }
        for connection in collectors {
            guard case let .collector(session) = connection.state, session.durable == nil else { continue }
            status.collectors.append(.init(name: "", durable: false, connected: true, peer: connection.peer,
                                           cursor: session.cursor, committed: nil,
                                           lagRecords: head > session.cursor ? head - session.cursor : 0,
                                           lagSeconds: age(of: session.cursor, head: head, now: now, segments: segments)))
        }
        status.traffic = traffic
        status.retention = .init(droppedRecords: spilled.retentionDropped, removedSegments: spilled.retentionRemovedSegments)
        status.recovery = recovery
        status.recovery.lostOnRead = spilled.damagedOnRead
        status.errors = errorsSent
        return status
    }

    /// Seconds since the record at `sequence` was accepted; 0 when it is not yet assigned. From
    /// the ring when it is there, else the first ingest time of its spill segment (an upper bound).
    private func age(of sequence: UInt64, head: UInt64, now: UInt64, segments: [SegmentInfo]) -> Double {
        guard sequence < head else { return 0 }
        var ingest: UInt64?
        if sequence >= ring.tail, let base = ring.record(sequence).baseAddress {
            ingest = DeliveredRecordLayout.ingestNanos(at: base)
        } else if let segment = segments.first(where: { !$0.isEmpty && $0.lastSequence >= sequence }) {
            ingest = segment.firstIngestNanos
        }
        guard let ingest, now > ingest else { return 0 }
        return Double(now - ingest) / 1e9
    }
}
