import AllegroTestSupport
import Foundation
import Testing

/// `spill_thread_nice_increment`: the real relay's spill thread runs that many nice steps below
/// the process's other threads, and only it does.
@Suite struct SpillPriorityTests {
    /// The nice value of each of `pid`'s threads (field 19 of /proc/PID/task/TID/stat; the
    /// command name, field 2, may hold spaces, so fields are counted after its closing bracket).
    static func threadNices(of pid: Int32) -> [Int] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { tid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                  let bracket = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: bracket)...].split(separator: " ")
            return fields.count > 16 ? Int(fields[16]) : nil
        }
    }

    /// The main thread's nice value, and how many threads run `increment` steps below it
    /// (waiting up to 5 s for the spill thread, which lowers itself as it starts).
    static func lowered(by increment: Int, in relay: RelayProcess, expecting: Int) throws -> Int {
        let base = try #require(threadNices(of: relay.pid).first)
        var count = 0
        for _ in 0 ..< 100 {
            count = threadNices(of: relay.pid).filter { $0 == min(base + increment, 19) }.count
            if count == expecting { break }
            usleep(50_000)
        }
        return count
    }

    @Test func theSpillThreadAloneRunsTheIncrementBelowTheRest() throws {
        // 7: a value nothing else in the process uses.
        let lowered = try RelayProcess(["--http", "off", "--set", "spill_thread_nice_increment=7"])
        #expect(try Self.lowered(by: 7, in: lowered, expecting: 1) == 1, "\(Self.threadNices(of: lowered.pid))")
        let unchanged = try RelayProcess(["--http", "off", "--set", "spill_thread_nice_increment=0"])
        usleep(300_000)
        #expect(try Self.lowered(by: 7, in: unchanged, expecting: 0) == 0, "\(Self.threadNices(of: unchanged.pid))")
    }
}
