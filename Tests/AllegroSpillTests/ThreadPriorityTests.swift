import AllegroPosix
import Foundation
import Synchronization
import Testing

/// `ThreadPriority`: a thread lowers its own priority only, and never past nice 19.
@Suite struct ThreadPriorityTests {
    @Test func aThreadLowersOnlyItselfAndNeverPastNineteen() throws {
        let before = try ThreadPriority.current()
        let seen = Mutex<[Int32]>([])
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let first = (try? ThreadPriority.lowerCallingThread(by: 2)) ?? -100
            let second = (try? ThreadPriority.lowerCallingThread(by: 40)) ?? -100
            let now = (try? ThreadPriority.current()) ?? -100
            seen.withLock { $0 = [first, second, now] }
            done.signal()
        }
        thread.start()
        done.wait()
        #expect(seen.withLock { $0 } == [min(before + 2, 19), 19, 19])
        #expect(try ThreadPriority.current() == before, "the calling thread of the test is untouched")
    }
}

/// `TimerSlack`: a thread sets its own timer slack only.
@Suite struct TimerSlackTests {
    @Test func aThreadSetsOnlyItsOwnTimerSlack() throws {
        let before = try TimerSlack.callingThreadNanos()
        let seen = Mutex<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let inherited = (try? TimerSlack.callingThreadNanos()) ?? -1
            let set = (try? TimerSlack.setCallingThread(nanos: 1_000)) != nil
            let now = (try? TimerSlack.callingThreadNanos()) ?? -1
            seen.withLock { $0 = [inherited, set ? 1 : 0, now] }
            done.signal()
        }
        thread.start()
        done.wait()
        #expect(seen.withLock { $0 } == [before, 1, 1_000])
        #expect(try TimerSlack.callingThreadNanos() == before, "the calling thread of the test is untouched")
    }
}
