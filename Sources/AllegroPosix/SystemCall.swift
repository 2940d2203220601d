import Glibc

/// The system calls Allegro makes, by name: what an error message starts with and what a test's
/// injected fault (`SystemFaults`, debug builds) matches.
public enum SystemCallName: String, Sendable {
    case open, close, fstat, lstat, pread, pwrite, fdatasync, fsync, ftruncate, flock
    case mkdir, opendir, unlink, rename
    case socket, setsockopt, getsockopt, getsockname, bind, listen, connect, accept4, recv, send, poll, read, write
    case epollCreate = "epoll_create1", epollControl = "epoll_ctl", epollWait = "epoll_wait", eventfd
    case spawn, pipe2, kill, waitpid
    case getpriority, setpriority, prctl
}

/// What one system call returned, or the errno it failed with. The errno is copied out the
/// moment the call returns -1, before any other code (a string, an allocation, a log line) can
/// run and overwrite it; the message is built afterwards, and only on failure.
enum CallOutcome<Value: Sendable>: Sendable {
    case value(Value)
    case failed(Int32)

    /// The value, or a `SystemError` whose message `call` builds now that errno is safe.
    @inline(__always)
    func get(_ call: @autoclosure () -> String) throws(SystemError) -> Value {
        switch self {
        case let .value(value): return value
        case let .failed(code): throw SystemError(call(), errno: code)
        }
    }

    var errno: Int32? {
        if case let .failed(code) = self { return code }
        return nil
    }
}

/// The one place Allegro enters the kernel (swift-system's `valueOrErrno` pattern): runs the
/// call, retries EINTR where that is safe, captures errno, and in debug builds first asks
/// `SystemFaults` whether a test wants this call to fail.
enum SystemCall {
    /// Runs `body`, a call that returns -1 and sets errno on failure. `path` is only matched
    /// against injected faults.
    @inline(__always)
    static func run<T: BinaryInteger & Sendable>(_ name: SystemCallName, path: String? = nil, retryingInterrupts: Bool = true,
                                                 _ body: () -> T) -> CallOutcome<T> {
        #if DEBUG
        if let code = SystemFaults.injected(name, path: path) { return .failed(code) }
        #endif
        while true {
            let result = body()
            guard result == -1 else { return .value(result) }
            let code = Glibc.errno
            if code == EINTR && retryingInterrupts { continue }
            return .failed(code)
        }
    }

    /// Runs `body`, a call that returns nil and sets errno on failure (opendir).
    @inline(__always)
    static func run<T>(_ name: SystemCallName, path: String? = nil, pointer body: () -> T?) -> CallOutcome<UncheckedPointer<T>> {
        #if DEBUG
        if let code = SystemFaults.injected(name, path: path) { return .failed(code) }
        #endif
        guard let result = body() else { return .failed(Glibc.errno) }
        return .value(UncheckedPointer(result))
    }

    /// close(2), never retried: Linux frees the number even when it reports EINTR.
    static func close(_ raw: Int32) -> CallOutcome<Int32> {
        run(.close, retryingInterrupts: false) { Glibc.close(raw) }
    }
}

/// A pointer a system call returned (a `DIR *`), carried out of `SystemCall.run` by the thread
/// that made the call.
struct UncheckedPointer<T>: @unchecked Sendable {
    let pointer: T
    init(_ pointer: T) { self.pointer = pointer }
}
