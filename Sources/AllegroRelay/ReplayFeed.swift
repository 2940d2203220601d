import AllegroPosix
import AllegroSpill
import Atomics
import Metrics
import Foundation
import Synchronization

/// Decompressed records from the spill for one catching-up collector, produced on a thread of
/// its own (decompression never runs on the I/O thread) and handed over in chunks: one block's
/// records each, in DELIVER layout. At most `depth` chunks are in flight; the I/O thread
/// returns each after copying it out, so memory is bounded per replay.
final class ReplayFeed: Sendable {
    /// One block's records. Owned by exactly one thread at a time: the replay thread while it
    /// fills it, then the I/O thread (through the feed's mutex) until it gives it back.
    final class Chunk: @unchecked Sendable {
        private(set) var storage: UnsafeMutableRawBufferPointer
        var count = 0

        init() { storage = .allocate(byteCount: 128 * 1024, alignment: 16) }
        deinit { storage.deallocate() }

        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[..<count]) }

        func fill(_ source: UnsafeRawBufferPointer) {
            if storage.count < source.count {
                storage.deallocate()
                storage = .allocate(byteCount: source.count, alignment: 16)
            }
            if let from = source.baseAddress, let to = storage.baseAddress { to.copyMemory(from: from, byteCount: source.count) }
            count = source.count
        }
    }

    private struct State {
        var ready: [Chunk] = []
        var spare: [Chunk] = []
        var finished = false
        var readThrough: UInt64 = 0
        /// Slots taken from `slots` and not yet given back (a chunk in flight).
        var slotsTaken = 0
    }

    private let state = Mutex(State())
    private let slots: DispatchSemaphore
    private let cancelled = ManagedAtomic<Bool>(false)

    /// Starts reading the spill from `sequence`, up to `readableThrough` as the spill publishes it.
    init(catalog: SegmentCatalog, from sequence: UInt64, readableThrough: ManagedAtomic<UInt64>, wake: WakeSignal,
         metrics: RelayMetrics, depth: Int = 8) {
        slots = DispatchSemaphore(value: depth)
        Thread { [self] in
            let reader = SpillReader(catalog: catalog, from: sequence)
            var more = true
            while more && !self.cancelled.load(ordering: .relaxed) {
                if self.slots.wait(timeout: .now() + .milliseconds(200)) == .timedOut { continue }
                let chunk = self.state.withLock { state in
                    state.slotsTaken += 1
                    return state.spare.popLast()
                } ?? Chunk()
                let limit = readableThrough.load(ordering: .acquiring)
                more = reader.nextBlock(limit: limit) { records, count in
                    chunk.fill(records)
                    metrics.replayRecords.increment(by: count)
                    metrics.replayBytes.increment(by: records.count)
                }
                if more {
                    self.state.withLock { $0.ready.append(chunk) }
                } else {
                    self.state.withLock { state in
                        state.spare.append(chunk)
                        state.readThrough = limit
                        state.slotsTaken -= 1
                    }
                    self.slots.signal()
                }
                wake.signal()
            }
            self.state.withLock { $0.finished = true }
            wake.signal()
        }.start()
    }

    /// The next chunk, or nil when none is ready yet (or the feed is done).
    func take() -> Chunk? {
        state.withLock { state in state.ready.isEmpty ? nil : state.ready.removeFirst() }
    }

    /// Gives a chunk back once its records are copied out.
    func recycle(_ chunk: Chunk) {
        state.withLock { state in
            state.spare.append(chunk)
            state.slotsTaken -= 1
        }
        slots.signal()
    }

    /// libdispatch traps when a semaphore is released below its starting value ("deallocated
    /// while in use"): a collector that left mid-replay never gave back the chunks it held, so
    /// their slots are returned here. The reader thread holds the feed, so none waits any more.
    deinit {
        let taken = state.withLock { $0.slotsTaken }
        for _ in 0 ..< max(taken, 0) { slots.signal() }
    }

    /// True once the reader reached the end of what was spilled and every chunk was taken.
    var isDrained: Bool { state.withLock { $0.finished && $0.ready.isEmpty } }

    /// Once drained: the reader had read every spilled record from its start up to this sequence.
    var readThrough: UInt64 { state.withLock { $0.readThrough } }

    /// Stops the reader thread (a collector went away).
    func cancel() { cancelled.store(true, ordering: .relaxed) }
}
