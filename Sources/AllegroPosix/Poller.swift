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

    private let descriptor: FileDescriptor
    private let events: UnsafeMutablePointer<epoll_event>
    private let capacity: Int

    public init(capacity: Int = 256) throws(SystemError) {
        let fd = try SystemCall.run(.epollCreate) { epoll_create1(Int32(EPOLL_CLOEXEC)) }.get("epoll_create1")
        descriptor = FileDescriptor(owning: fd)
        self.capacity = max(capacity, 1)
        events = .allocate(capacity: self.capacity)
    }

    /// The epoll descriptor is closed by its `FileDescriptor`.
    deinit { events.deallocate() }

    public func add(_ fd: FileDescriptor, _ interest: Interest, token: UInt64) throws(SystemError) {
        try control(EPOLL_CTL_ADD, fd, interest, token, "epoll_ctl(ADD)")
    }

    public func modify(_ fd: FileDescriptor, _ interest: Interest, token: UInt64) throws(SystemError) {
        try control(EPOLL_CTL_MOD, fd, interest, token, "epoll_ctl(MOD)")
    }

    /// Removes a registration; call it before closing the descriptor (closing also removes it
    /// once no other descriptor refers to the same open file).
    public func remove(_ fd: FileDescriptor) {
        let epoll = descriptor.rawValue, raw = fd.rawValue
        guard raw >= 0 else { return }
        _ = SystemCall.run(.epollControl) { epoll_ctl(epoll, EPOLL_CTL_DEL, raw, nil) }
    }

    /// Waits up to `timeoutMillis` (-1: forever) and calls `body` for each ready registration.
    /// Returns how many there were (0 when a signal interrupted the wait).
    @discardableResult
    public func wait(timeoutMillis: Int32, _ body: (Event) -> Void) throws(SystemError) -> Int {
        let epoll = descriptor.rawValue, events = self.events, capacity = Int32(self.capacity)
        let outcome = SystemCall.run(.epollWait, retryingInterrupts: false) { epoll_wait(epoll, events, capacity, timeoutMillis) }
        if outcome.errno == EINTR { return 0 }
        let n = try outcome.get("epoll_wait")
        for index in 0 ..< Int(n) {
            let flags = events[index].events
            body(Event(token: events[index].data.u64,
                       readable: flags & EPOLLIN.rawValue != 0,
                       writable: flags & EPOLLOUT.rawValue != 0,
                       failed: flags & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0))
        }
        return Int(n)
    }

    private func control(_ operation: Int32, _ fd: FileDescriptor, _ interest: Interest, _ token: UInt64,
                         _ call: StaticString) throws(SystemError) {
        var event = epoll_event()
        event.events = interest.rawValue
        event.data.u64 = token
        let epoll = descriptor.rawValue, raw = fd.rawValue
        _ = try SystemCall.run(.epollControl) { epoll_ctl(epoll, operation, raw, &event) }.get("\(call)")
    }
}

/// An eventfd: another thread (or a signal handler) calls `signal()` to wake a `Poller` that
/// has `descriptor` registered; the loop calls `drain()`.
public final class WakeSignal: Sendable {
    /// Owned here; closed when the signal is released.
    public let descriptor: FileDescriptor

    public init() throws(SystemError) {
        let fd = try SystemCall.run(.eventfd) { eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC)) }.get("eventfd")
        descriptor = FileDescriptor(owning: fd)
    }

    public func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(descriptor.rawValue, &one, 8)
    }

    public func drain() {
        var value: UInt64 = 0
        _ = Glibc.read(descriptor.rawValue, &value, 8)
    }

    /// Waits until signalled or `timeoutMillis` pass, then drains; true when signalled. For a
    /// thread that sleeps on this signal alone (not registered with a `Poller`).
    @discardableResult
    public func wait(timeoutMillis: Int32) -> Bool {
        var entry = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, timeoutMillis) > 0
        if ready { drain() }
        return ready
    }
}
