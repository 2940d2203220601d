import Glibc

/// Clocks in nanoseconds. `monotonic` for timeouts and intervals, `wall` for timestamps that
/// leave the process (ingest times, event times).
public enum Clock {
    @inline(__always)
    public static var monotonicNanos: UInt64 { read(CLOCK_MONOTONIC) }

    /// Nanoseconds since the Unix epoch.
    @inline(__always)
    public static var wallNanos: UInt64 { read(CLOCK_REALTIME) }

    @inline(__always)
    private static func read(_ clock: clockid_t) -> UInt64 {
        var spec = timespec()
        clock_gettime(clock, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// Sleeps for at least `nanos` nanoseconds.
    public static func sleep(nanos: UInt64) {
        var request = timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}
