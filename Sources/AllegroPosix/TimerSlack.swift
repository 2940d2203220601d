import CAllegroSys

/// The calling thread's timer slack: how much later than asked Linux may end its sleeps and
/// timeouts, to merge wake-ups (50 µs for a normal thread). A thread whose sleep is itself a
/// deadline, such as the spill's group-commit interval, asks for less: on the machine in
/// BENCHMARKS.md a 600 µs nanosleep overran by 74-91 µs at p50 with the default and by 25-27 with
/// 1 µs (the rest is the wake-up itself). A per-thread attribute; it needs no privilege.
public enum TimerSlack {
    /// Sets the calling thread's timer slack (nanoseconds; 0 would restore the thread's default).
    public static func setCallingThread(nanos: UInt) throws(SystemError) {
        _ = try SystemCall.run(.prctl) { allegro_set_timer_slack(nanos) }.get("prctl (PR_SET_TIMERSLACK \(nanos))")
    }

    /// The calling thread's timer slack, nanoseconds.
    public static func callingThreadNanos() throws(SystemError) -> Int {
        try SystemCall.run(.prctl) { allegro_timer_slack() }.get("prctl (PR_GET_TIMERSLACK)")
    }
}
