import AllegroClient
import AllegroPosix
import AllegroWire
import Foundation
import Synchronization

/// The relay's stream as a durable collector, on a thread of its own (the blocking `Collector`
/// never runs on Swift concurrency's threads): it keeps the records of the kinds asked for
/// (copied, in a queue bounded by `maxQueuedBytes`; when full it stops reading, and the relay
/// keeps the rest), remembers how far it has seen, and sends the commits asked for. Other
/// records are only counted past.
final class RecordFeed: Sendable {
    struct Item: Sendable {
        var sequence: UInt64
        var kind: String
        var session: String
        var payload: String
    }

    private struct State {
        var items: [Item] = []
        var bytes = 0
        /// Every record at or below this has been seen (and kept if wanted).
        var seenThrough: UInt64 = 0
        var wantCommit: UInt64 = 0
        var committed: UInt64 = 0
        var connected = false
        var problem: String?
        var stopped = false
    }

    static let maxQueuedBytes = 16 << 20
    private let state = Mutex(State())
    private let kinds: Set<String>

    init(options: CollectorOptions, kinds: Set<String>) {
        self.kinds = kinds
        var options = options
        // The collector retries inside its calls; these say meanwhile whether the relay is there.
        options.onConnection = { [weak self] event in
            self?.state.withLock { state in
                switch event {
                case let .failed(_, error, _, _):
                    state.connected = false
                    state.problem = error.description
                case .connected:
                    state.connected = true
                    state.problem = nil
                }
            }
        }
        let configured = options
        let thread = Thread { [self] in run(configured) }
        thread.name = "allegro-bridge-feed"
        thread.start()
    }

    /// Everything kept since the last drain, and how far the stream has been seen.
    func drain() -> (items: [Item], seenThrough: UInt64) {
        state.withLock { state in
            defer { state.items.removeAll(); state.bytes = 0 }
            return (state.items, state.seenThrough)
        }
    }

    /// Asks for a commit through `sequence` (sent by the feed's thread, confirmed later).
    func commit(through sequence: UInt64) {
        state.withLock { $0.wantCommit = max($0.wantCommit, sequence) }
    }

    var committed: UInt64 { state.withLock { $0.committed } }
    var connected: Bool { state.withLock { $0.connected } }
    /// Why the feed cannot read the relay, while it cannot.
    var problem: String? { state.withLock { $0.problem } }

    func stop() { state.withLock { $0.stopped = true } }

    private func run(_ options: CollectorOptions) {
        var collector: Collector?
        var commitSent: UInt64 = 0
        while !state.withLock({ $0.stopped }) {
            do throws(ClientError) {
                if collector == nil {
                    let opened = try Collector(options)
                    collector = opened
                    commitSent = opened.committed
                    state.withLock { state in
                        state.connected = true
                        state.problem = nil
                        state.committed = opened.committed
                        state.seenThrough = max(state.seenThrough, opened.lastSequence)
                    }
                }
                guard let current = collector else { continue }
                let want = state.withLock { $0.wantCommit }
                if want > commitSent {
                    try current.commit(through: want)
                    commitSent = want
                }
                if state.withLock({ $0.bytes }) >= Self.maxQueuedBytes {
                    Thread.sleep(forTimeInterval: 0.02)
                    continue
                }
                let event = try current.next(timeoutMillis: 50)
                state.withLock { state in
                    state.committed = current.committed
                    switch event {
                    case let .record(record)?:
                        let kind = record.kind.string
                        if kinds.contains(kind) {
                            let payload = record.payload.string
                            state.items.append(Item(sequence: record.relaySequence, kind: kind, session: record.session.string, payload: payload))
                            state.bytes += payload.utf8.count + 64
                        }
                        state.seenThrough = record.relaySequence
                    case let .skip(_, last)?:
                        state.seenThrough = last
                    case nil:
                        break
                    }
                }
            } catch {
                collector?.close()
                collector = nil
                let advice = error.isPermanent ? Self.advice(error, options) : ""
                state.withLock { state in
                    state.connected = false
                    state.problem = error.description + advice
                }
                Thread.sleep(forTimeInterval: error.isPermanent ? 5 : 1)
            }
        }
        collector?.close()
    }

    private static func advice(_ error: ClientError, _ options: CollectorOptions) -> String {
        guard case let .refused(code, _) = error, code == ErrorCode.unknownCollector.rawValue else { return "" }
        return "; add \(options.name) to the relay's durable_collectors"
    }
}
