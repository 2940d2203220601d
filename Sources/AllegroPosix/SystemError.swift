import Glibc

/// A failed system call: which call, and the `errno` it left. Every syscall in Allegro goes
/// through `SystemCall.run`, which copies errno the moment the call returns; this message is
/// built only afterwards.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// The process or the system ran out of file descriptors.
    public var isOutOfDescriptors: Bool { errno == EMFILE || errno == ENFILE }

    /// The reader of a pipe went away (`allegro tail | head`).
    public var isBrokenPipe: Bool { errno == EPIPE }

    /// The connection is gone (reset, broken pipe, timed out by the kernel).
    public var isDisconnect: Bool {
        [ECONNRESET, EPIPE, ETIMEDOUT, ECONNABORTED, ENOTCONN, EHOSTUNREACH, ENETUNREACH].contains(errno)
    }
}
