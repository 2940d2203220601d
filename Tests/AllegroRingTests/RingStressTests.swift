import AllegroRing
import Atomics
import Foundation
import Testing

/// One writer thread and several reader threads, each holding a gate, move records of varied
/// sizes through a small ring; every reader checks every byte of every record in order.
/// Run it under ThreadSanitizer: `swift test --sanitize=thread --filter RingStress`.
@Suite struct RingStressTests {
    @Test func writerAndGatedReadersAgreeOnEveryByte() {
        let records: UInt64 = 1_000_000
        let readers = 3
        let ring = RecordRing(byteCapacity: 64 * 1024, slotCapacity: 1024)
        let gates = (0 ..< readers).map { _ in ring.addGate(from: 1) }
        let mismatches = ManagedAtomic<Int>(0)
        let verified = ManagedAtomic<Int>(0)
        let done = DispatchSemaphore(value: 0)

        for gate in gates {
            Thread {
                var next: UInt64 = 1
                while next <= records {
                    let head = ring.head
                    if next == head { sched_yield(); continue }
                    while next < head {
                        let record = ring.record(next)
                        let size = Int(next % 301)
                        if record.count != size || !RecordRingTests.matches(next, record) {
                            mismatches.wrappingIncrement(ordering: .relaxed)
                        }
                        next += 1
                        // Release in small steps, as a real reader would after each batch.
                        if next % 7 == 0 { gate.advance(to: next) }
                    }
                    gate.advance(to: next)
                }
                verified.wrappingIncrement(by: Int(next - 1), ordering: .relaxed)
                done.signal()
            }.start()
        }

        Thread {
            var sequence: UInt64 = 1
            while sequence <= records {
                let size = Int(sequence % 301)
                if ring.append(size: size, { space, assigned in RecordRingTests.pattern(assigned, space) }) != nil {
                    sequence += 1
                } else {
                    sched_yield()
                }
            }
            done.signal()
        }.start()

        var finished = 0
        for _ in 0 ... readers where done.wait(timeout: .now() + 300) == .success { finished += 1 }
        #expect(finished == readers + 1, "threads did not finish in time")
        #expect(mismatches.load(ordering: .relaxed) == 0)
        #expect(verified.load(ordering: .relaxed) == Int(records) * readers)
        #expect(ring.head == records + 1)
    }
}
