import CAllegroSys
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

    /// Makes SIGTERM and SIGINT wake `wake` and set the flag `stopRequested` reads. The handler
    /// only stores to an atomic-sized global and writes to an eventfd: both async-signal-safe.
    public static func onTerminationSignal(_ wake: WakeSignal) {
        terminationWakeDescriptor = wake.descriptor
        let handler: @convention(c) (Int32) -> Void = { _ in
            terminationRequested = 1
            var one: UInt64 = 1
            _ = Glibc.write(terminationWakeDescriptor, &one, 8)
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        sigaction(SIGTERM, &action, nil)
        sigaction(SIGINT, &action, nil)
    }

    /// True once SIGTERM or SIGINT arrived after `onTerminationSignal`.
    public static var stopRequested: Bool { terminationRequested != 0 }
}

// Written only by the signal handler and read by the event loop after the eventfd wakes it.
nonisolated(unsafe) private var terminationRequested: sig_atomic_t = 0
nonisolated(unsafe) private var terminationWakeDescriptor: Int32 = -1
