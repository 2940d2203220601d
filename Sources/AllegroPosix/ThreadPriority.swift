import Glibc

/// The calling thread's CPU priority (its nice value: on Linux a per-thread attribute, and
/// `PRIO_PROCESS` with id 0 names the calling thread only). Raising the value never needs a
/// privilege, so the relay can always give a background thread less of a contended CPU.
public enum ThreadPriority {
    /// The highest nice value (the lowest priority) Linux has.
    public static let lowestNice: Int32 = 19

    /// The calling thread's nice value.
    public static func current() throws(SystemError) -> Int32 {
        #if DEBUG
        if let code = SystemFaults.injected(.getpriority, path: nil) { throw SystemError("getpriority", errno: code) }
        #endif
        // -1 is a nice value as well as the failure: errno, cleared first, tells them apart
        // (which is why this call does not go through `SystemCall.run`).
        Glibc.errno = 0
        let value = Glibc.getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        let code = Glibc.errno
        if value == -1 && code != 0 { throw SystemError("getpriority", errno: code) }
        return value
    }

    /// Lowers the calling thread's priority by `increment` nice steps (0 ... 19; the result is
    /// at most 19) and returns the nice value it now has.
    @discardableResult
    public static func lowerCallingThread(by increment: Int32) throws(SystemError) -> Int32 {
        let now = try current()
        let target = min(now + max(increment, 0), lowestNice)
        guard target != now else { return now }
        try SystemCall.run(.setpriority) { Glibc.setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, target) }
            .get("setpriority (nice \(target))")
        return target
    }
}
