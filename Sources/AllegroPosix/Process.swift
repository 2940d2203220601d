import Glibc

/// Process-wide set-up the relay does once at start.
public enum ProcessSetup {
    /// Unblocks every signal (a parent such as Foundation's `Process` can leave SIGTERM
    /// blocked in the mask it hands down, which would make a terminate request silently do
    /// nothing) and ignores SIGPIPE (sockets use MSG_NOSIGNAL too) and SIGXFSZ.
    public static func resetSignals() {
        var empty = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, nil)
        signal(SIGPIPE, SIG_IGN)
        // Past a file size limit, a write should fail with EFBIG (the spill reports it and
        // retries), not kill the process.
        signal(SIGXFSZ, SIG_IGN)
    }

    /// Ignores SIGHUP until a handler is installed (a process that reloads on SIGHUP must not be
    /// ended by one that comes during its start).
    public static func ignoreHangups() {
        signal(SIGHUP, SIG_IGN)
    }

    /// Raises the soft limit on open descriptors to the hard limit; returns the limit in force.
    @discardableResult
    public static func raiseDescriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }

    /// Ends the process at once with `code`, running no atexit handlers or deinitialisers (for
    /// a second stop signal: whatever is in flight is left as a crash would leave it).
    public static func exitImmediately(_ code: Int32) -> Never { Glibc._exit(code) }
}
