import Atomics
import Foundation
import Synchronization

/// The threads that read the spill for catching-up collectors: a fixed number (`replay_threads`),
/// whatever the number of collectors, taking feeds from one queue in turn (one block each, then
/// the feed goes to the back), so a collector far behind does not starve the others and the
/// relay's thread count is bounded.
public final class ReplayPool: Sendable {
    private let queue = Mutex<[ReplayFeed]>([])
    private let ready = DispatchSemaphore(value: 0)
    private let stopped = ManagedAtomic<Bool>(false)
    public let threads: Int

    public init(threads: Int) {
        self.threads = max(1, threads)
        for index in 0 ..< self.threads {
            let thread = Thread { [self] in
                while true {
                    ready.wait()
                    if stopped.load(ordering: .acquiring) { return }
                    let feed = queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                    feed?.readOne()
                }
            }
            thread.name = "allegro-replay-\(index)"
            thread.start()
        }
    }

    /// Queues `feed` for one block's read. A feed is queued at most once at a time (its caller
    /// set `scheduled`).
    func enqueue(_ feed: ReplayFeed) {
        queue.withLock { $0.append(feed) }
        ready.signal()
    }

    /// Lets every thread end (the relay is stopping).
    public func stop() {
        stopped.store(true, ordering: .releasing)
        for _ in 0 ..< threads { ready.signal() }
    }
}
