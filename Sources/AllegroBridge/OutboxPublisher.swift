import AllegroClient
import AllegroLog
import AllegroPosix
import Foundation
import Synchronization

/// Publishes the `BridgeStore` outbox on the relay stream, on a thread of its own (the blocking
/// `Producer` never runs on Swift concurrency's threads). Each row goes under its own producer
/// sequence, so a row sent again (after a crash, or a lost ack) is dropped by the relay as a
/// duplicate; rows leave the outbox once acknowledged. Reads at most `batchRows` at a time.
final class OutboxPublisher: Sendable {
    static let batchRows = 512
    private let wake = DispatchSemaphore(value: 0)
    private let state = Mutex(State())

    private struct State {
        var stopped = false
        var problem: String?
        var published = 0
    }

    init(store: BridgeStore, relay: SocketAddress, token: String?, producerID: String, log: EventLog) {
        let thread = Thread { [self] in run(store: store, relay: relay, token: token, producerID: producerID, log: log) }
        thread.name = "allegro-bridge-outbox"
        thread.start()
    }

    /// New rows are waiting.
    func poke() { wake.signal() }

    func stop() {
        state.withLock { $0.stopped = true }
        wake.signal()
    }

    /// Why the outbox cannot be published, while it cannot.
    var problem: String? { state.withLock { $0.problem } }
    var published: Int { state.withLock { $0.published } }

    private func run(store: BridgeStore, relay: SocketAddress, token: String?, producerID: String, log: EventLog) {
        var producer: Producer?
        while !state.withLock({ $0.stopped }) {
            do {
                let rows = try store.pending(limit: Self.batchRows)
                guard let first = rows.first else {
                    _ = wake.wait(timeout: .now() + .seconds(1))
                    continue
                }
                if let current = producer, current.unackedCount == 0, current.nextSequence != first.sequence {
                    // The rows are not the ones this producer would number next: start again at them.
                    try? current.close(timeoutMillis: 2_000)
                    producer = nil
                }
                if producer == nil {
                    var options = ProducerOptions(relays: [relay], producerID: producerID)
                    options.token = token ?? ""
                    options.firstSequence = first.sequence
                    options.reconnectForMillis = 5_000
                    producer = try Producer(options)
                }
                guard let current = producer else { continue }
                // Rows below `nextSequence` are already held by the producer (sent, not yet acked).
                for row in rows where row.sequence >= current.nextSequence {
                    guard row.sequence == current.nextSequence else { break }
                    var payload = row.payload
                    try payload.withUTF8 { bytes in
                        _ = try current.publish(session: row.session, kind: row.kind, contentType: "application/json",
                                                payload: UnsafeRawBufferPointer(bytes))
                    }
                }
                try current.flush(timeoutMillis: 10_000)
                try store.acknowledged(through: current.ackedThrough)
                state.withLock { state in
                    state.published += rows.count
                    state.problem = nil
                }
            } catch {
                state.withLock { $0.problem = "cannot publish to the relay: \(error)" }
                log.log(.warning, "outbox_waiting", ["reason": "\(error)"])
                if (error as? ClientError)?.isPermanent ?? false {
                    try? producer?.close(timeoutMillis: 1_000)
                    producer = nil
                }
                _ = wake.wait(timeout: .now() + .seconds(1))
            }
        }
        try? producer?.close(timeoutMillis: 2_000)
    }
}
