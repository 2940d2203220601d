import Glibc

/// A failed system call: which call, and the `errno` it left. Every syscall in Allegro goes
/// through this module, so errno is read in exactly one place, right after the call.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// The error for the call that just failed.
    static func last(_ call: String) -> SystemError { SystemError(call, errno: Glibc.errno) }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// The process or the system ran out of file descriptors.
    public var isOutOfDescriptors: Bool { errno == EMFILE || errno == ENFILE }

    /// The connection is gone (reset, broken pipe, timed out by the kernel).
    public var isDisconnect: Bool {
        [ECONNRESET, EPIPE, ETIMEDOUT, ECONNABORTED, ENOTCONN, EHOSTUNREACH, ENETUNREACH].contains(errno)
    }
}

/// Runs `body` until it does not fail with EINTR. Returns its result, or nil with `errno` set.
@inline(__always)
func retryingInterrupts<T: BinaryInteger>(_ body: () -> T) -> T {
    while true {
        let result = body()
        if result == -1 && Glibc.errno == EINTR { continue }
        return result
    }
}
