import CAllegroSys
import Glibc

/// What a non-blocking read or write did.
public enum IOResult: Equatable, Sendable {
    /// This many bytes moved (at least 1).
    case transferred(Int)
    /// The kernel had nothing to give or no room to take: wait for readiness.
    case wouldBlock
    /// The peer closed its side (read) or the connection is gone (write).
    case closed
}

/// What `accept` found.
public enum AcceptResult: Sendable {
    case accepted(Socket, SocketAddress?)
    case wouldBlock
    /// A failure that leaves the listener usable (out of descriptors, a connection aborted
    /// before it was taken): the caller logs it and tries again later.
    case failed(SystemError)
}

/// A TCP socket. A thin typed layer: each method is one system call (retried on EINTR), errno
/// becomes `SystemError`, and `EAGAIN` becomes `.wouldBlock`. The socket owns its descriptor
/// (`FileDescriptor`); copies of the value share that one owner, and `close()` is called once.
public struct Socket: Sendable {
    public let descriptor: FileDescriptor

    public init(owning descriptor: FileDescriptor) { self.descriptor = descriptor }

    // MARK: Creating

    private static func stream(_ address: SocketAddress) throws(SystemError) -> Socket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = try SystemCall.run(.socket) { Glibc.socket(address.family, type, 0) }.get("socket")
        return Socket(owning: FileDescriptor(owning: fd))
    }

    /// A non-blocking listening socket with SO_REUSEADDR, bound to `address`.
    public static func listen(on address: SocketAddress, backlog: Int32 = 1024) throws(SystemError) -> Socket {
        let socket = try stream(address)
        let fd = socket.descriptor.rawValue
        do throws(SystemError) {
            try socket.setOption(SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)")
            _ = try SystemCall.run(.bind) { address.withSockaddr { Glibc.bind(fd, $0, $1) } }.get("bind \(address)")
            _ = try SystemCall.run(.listen) { Glibc.listen(fd, backlog) }.get("listen \(address)")
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    /// A connected, non-blocking TCP socket with TCP_NODELAY, or an error after `timeoutMillis`.
    public static func connect(to address: SocketAddress, timeoutMillis: Int32) throws(SystemError) -> Socket {
        let socket = try stream(address)
        let fd = socket.descriptor.rawValue
        do throws(SystemError) {
            // Non-blocking: EINPROGRESS (or EINTR) means the handshake goes on; poll for it.
            let started = SystemCall.run(.connect, retryingInterrupts: false) { address.withSockaddr { Glibc.connect(fd, $0, $1) } }
            if let code = started.errno {
                guard code == EINPROGRESS || code == EINTR else { throw SystemError("connect \(address)", errno: code) }
                guard try socket.wait(writable: true, timeoutMillis: timeoutMillis) else {
                    throw SystemError("connect \(address)", errno: ETIMEDOUT)
                }
                var pending: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                _ = try SystemCall.run(.getsockopt) { getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &size) }
                    .get("getsockopt(SO_ERROR)")
                guard pending == 0 else { throw SystemError("connect \(address)", errno: pending) }
            }
            try socket.setNoDelay()
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    // MARK: Using

    /// Takes one pending connection, non-blocking and close-on-exec, with TCP_NODELAY set.
    public func accept() -> AcceptResult {
        var storage = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let listener = descriptor.rawValue
        let outcome = SystemCall.run(.accept4) {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(listener, $0, &size, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
        }
        let fd: Int32
        switch outcome {
        case let .value(accepted): fd = accepted
        case let .failed(code):
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            return .failed(SystemError("accept4", errno: code))
        }
        let socket = Socket(owning: FileDescriptor(owning: fd))
        try? socket.setNoDelay()
        return .accepted(socket, withUnsafePointer(to: &storage) { SocketAddress.from($0) })
    }

    /// One `recv` into `buffer`.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .wouldBlock }
        let fd = descriptor.rawValue, count = buffer.count
        switch SystemCall.run(.recv, { Glibc.recv(fd, base, count, 0) }) {
        case let .value(n): return n > 0 ? .transferred(n) : .closed
        case let .failed(code): return try Self.unfinished(code, "recv")
        }
    }

    /// Bytes the peer has sent that are waiting to be received.
    public var pendingInputBytes: Int { Int(allegro_pending_input(descriptor.rawValue)) }

    /// One `send` with MSG_NOSIGNAL, so a closed peer is an error, never a SIGPIPE.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .transferred(0) }
        let fd = descriptor.rawValue, count = bytes.count
        switch SystemCall.run(.send, { Glibc.send(fd, base, count, Int32(MSG_NOSIGNAL)) }) {
        case let .value(n): return .transferred(n)
        case let .failed(code): return try Self.unfinished(code, "send")
        }
    }

    /// A failed recv or send: no data yet, the peer gone, or a real error.
    private static func unfinished(_ code: Int32, _ call: StaticString) throws(SystemError) -> IOResult {
        if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
        let error = SystemError("\(call)", errno: code)
        if error.isDisconnect { return .closed }
        throw error
    }

    /// Waits until the socket is readable (or writable) or the timeout passes; true when ready.
    /// A hang-up or error counts as ready: the next call reports it.
    public func wait(writable: Bool = false, timeoutMillis: Int32) throws(SystemError) -> Bool {
        try poll(Int16(writable ? POLLOUT : POLLIN), timeoutMillis: timeoutMillis)
    }

    /// Waits until the socket is readable, or writable when `writable` is set, or the timeout
    /// passes; false on timeout.
    public func waitReadable(orWritable writable: Bool, timeoutMillis: Int32) throws(SystemError) -> Bool {
        try poll(Int16(POLLIN | (writable ? POLLOUT : 0)), timeoutMillis: timeoutMillis)
    }

    /// poll(2) on this socket alone. An interrupted wait is retried with the full timeout: the
    /// callers' deadlines are their own.
    private func poll(_ events: Int16, timeoutMillis: Int32) throws(SystemError) -> Bool {
        var entry = pollfd(fd: descriptor.rawValue, events: events, revents: 0)
        return try SystemCall.run(.poll) { Glibc.poll(&entry, 1, timeoutMillis) }.get("poll") > 0
    }

    public func setNoDelay() throws(SystemError) {
        try setOption(Int32(IPPROTO_TCP), TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)")
    }

    /// The address the socket is bound to (for a listener on port 0: the port the kernel chose).
    public func localAddress() throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = descriptor.rawValue
        _ = try SystemCall.run(.getsockname) {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
            }
        }.get("getsockname")
        guard let address = withUnsafePointer(to: &storage, { SocketAddress.from($0) }) else {
            throw SystemError("getsockname", errno: EAFNOSUPPORT)
        }
        return address
    }

    /// Sends FIN: the peer reads what was sent, then end of stream.
    public func shutdownWrite() { _ = Glibc.shutdown(descriptor.rawValue, Int32(SHUT_WR)) }

    /// Closes the socket; its owner calls this once (see `FileDescriptor`).
    public func close() { descriptor.close() }

    private func setOption(_ level: Int32, _ name: Int32, _ value: Int32, _ call: StaticString) throws(SystemError) {
        var value = value
        let fd = descriptor.rawValue
        _ = try SystemCall.run(.setsockopt) { setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) }
            .get("\(call)")
    }
}
