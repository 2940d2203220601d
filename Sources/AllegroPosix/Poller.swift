import CAllegroSys
import Glibc

/// Level-triggered epoll. Each registration carries a 64-bit token the owner chooses; `wait`
/// fills a buffer allocated once and hands back (token, readiness) pairs.
///
/// Level-triggered on purpose: the relay reads a bounded amount per readiness (fairness between
/// a firehose producer and everyone else) and the kernel reports the rest again, and pausing a
/// connection for backpressure is one `modify` that drops `readable` interest.
public final class Poller {
    /// What a registration wants to hear about.
    public struct Interest: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Interest(rawValue: EPOLLIN.rawValue)
        public static let writable = Interest(rawValue: EPOLLOUT.rawValue)
    }

    /// One ready registration.
    public struct Event {
        public var token: UInt64
        public var readable: Bool
        public var writable: Bool
        /// Hang-up or socket error: reading reports the details.
        public var failed: Bool
    }

    private let descriptor: Int32
    private let events: UnsafeMutablePointer<epoll_event>
    private let capacity: Int

    public init(capacity: Int = 256) throws(SystemError) {
        let fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard fd >= 0 else { throw .last("epoll_create1") }
        descriptor = fd
        self.capacity = max(capacity, 1)
        events = .allocate(capacity: self.capacity)
    }

    deinit {
        events.deallocate()
        Glibc.close(descriptor)
    }

    public func add(_ fd: Int32, _ interest: Interest, token: UInt64) throws(SystemError) {
        try control(EPOLL_CTL_ADD, fd, interest, token, "epoll_ctl(ADD)")
    }

    public func modify(_ fd: Int32, _ interest: Interest, token: UInt64) throws(SystemError) {
        try control(EPOLL_CTL_MOD, fd, interest, token, "epoll_ctl(MOD)")
    }

    /// Removes a registration (closing the descriptor also does).
    public func remove(_ fd: Int32) {
        _ = epoll_ctl(descriptor, EPOLL_CTL_DEL, fd, nil)
    }

    /// Waits up to `timeoutMillis` (-1: forever) and calls `body` for each ready registration.
    /// Returns how many there were.
    @discardableResult
    public func wait(timeoutMillis: Int32, _ body: (Event) -> Void) throws(SystemError) -> Int {
        let n = epoll_wait(descriptor, events, Int32(capacity), timeoutMillis)
        if n < 0 {
            if errno == EINTR { return 0 }
            throw .last("epoll_wait")
        }
        for index in 0 ..< Int(n) {
            let flags = events[index].events
            body(Event(token: events[index].data.u64,
                       readable: flags & EPOLLIN.rawValue != 0,
                       writable: flags & EPOLLOUT.rawValue != 0,
                       failed: flags & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0))
        }
        return Int(n)
    }

    private func control(_ operation: Int32, _ fd: Int32, _ interest: Interest, _ token: UInt64, _ call: String) throws(SystemError) {
        var event = epoll_event()
        event.events = interest.rawValue
        event.data.u64 = token
        guard epoll_ctl(descriptor, operation, fd, &event) == 0 else { throw .last(call) }
    }
}

/// An eventfd: another thread (or a signal handler) calls `signal()` to wake a `Poller` that
/// has `descriptor` registered; the loop calls `drain()`.
public final class WakeSignal: Sendable {
    public let descriptor: Int32

    public init() throws(SystemError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard fd >= 0 else { throw .last("eventfd") }
        descriptor = fd
    }

    deinit { Glibc.close(descriptor) }

    public func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(descriptor, &one, 8)
    }

    public func drain() {
        var value: UInt64 = 0
        _ = Glibc.read(descriptor, &value, 8)
    }

    /// Waits until signalled or `timeoutMillis` pass, then drains; true when signalled. For a
    /// thread that sleeps on this signal alone (not registered with a `Poller`).
    @discardableResult
    public func wait(timeoutMillis: Int32) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, timeoutMillis) > 0
        if ready { drain() }
        return ready
    }
}
