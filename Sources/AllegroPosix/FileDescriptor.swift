import Glibc
import Synchronization

/// An open file descriptor and its one owner: every socket, file, epoll instance and eventfd in
/// Allegro is held by exactly one `FileDescriptor`, which closes it exactly once.
///
/// Why an owning reference and not a number: a descriptor number is reused by the kernel as soon
/// as it is closed, so a second `close(n)` closes whatever another thread opened meanwhile (an
/// HTTP connection, a SQLite reader's file). Here the number lives in one atomic that `close()`
/// swaps to -1, so no path can close it twice: a second `close()` is a programmer error (it fails
/// a debug assertion and does nothing in release). A descriptor still open when its owner is
/// released is closed by `deinit`, so an early exit from a throwing path leaks nothing.
///
/// Thread rules: the owner's thread uses and closes it; `rawValue` may be read from any thread
/// (it is a relaxed atomic load). `Sendable` because its only state is that atomic.
public final class FileDescriptor: Sendable {
    private let number: Atomic<Int32>

    /// Takes ownership of `rawValue`, a descriptor the caller just opened.
    public init(owning rawValue: Int32) {
        assert(rawValue >= 0, "FileDescriptor(owning:) needs an open descriptor")
        number = Atomic(rawValue)
    }

    deinit {
        let raw = number.load(ordering: .relaxed)
        if raw >= 0 { _ = SystemCall.close(raw) }
    }

    /// The descriptor number while open, -1 once closed.
    public var rawValue: Int32 { number.load(ordering: .relaxed) }

    public var isOpen: Bool { rawValue >= 0 }

    /// Reads what is there, up to `buffer.count` bytes, waiting for some (a pipe, a blocking
    /// descriptor); 0 at end of file. EINTR is retried.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        let raw = rawValue
        return try SystemCall.run(.read) { Glibc.read(raw, buffer.baseAddress, buffer.count) }.get("read")
    }

    /// Waits up to `timeoutMillis` for something to read (or the end of the file); false when
    /// the time ran out. EINTR is retried with the whole timeout (a signal is rare here).
    public func waitReadable(timeoutMillis: Int32) -> Bool {
        var entry = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        return ((try? SystemCall.run(.poll) { Glibc.poll(&entry, 1, timeoutMillis) }.get("poll")) ?? 0) > 0
    }

    /// Closes the descriptor. Linux releases the number even when close(2) reports an error
    /// (EINTR included), so the call is never retried.
    public func close() {
        let raw = number.exchange(-1, ordering: .acquiringAndReleasing)
        assert(raw >= 0, "a descriptor was closed twice")
        guard raw >= 0 else { return }
        _ = SystemCall.close(raw)
    }
}
