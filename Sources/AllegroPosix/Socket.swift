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

/// A TCP socket descriptor. A thin typed layer: each method is one system call (retried on
/// EINTR), errno becomes `SystemError`, and `EAGAIN` becomes `.wouldBlock`. The value does not
/// own the descriptor: its owner calls `close()` exactly once.
public struct Socket: Sendable, Hashable {
    public let descriptor: Int32

    public init(descriptor: Int32) { self.descriptor = descriptor }

    // MARK: Creating

    /// A non-blocking listening socket with SO_REUSEADDR, bound to `address`.
    public static func listen(on address: SocketAddress, backlog: Int32 = 1024) throws(SystemError) -> Socket {
        let fd = Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket") }
        let socket = Socket(descriptor: fd)
        do throws(SystemError) {
            try socket.setOption(SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)")
            let bound = address.withSockaddr { Glibc.bind(fd, $0, $1) }
            guard bound == 0 else { throw SystemError.last("bind \(address)") }
            guard Glibc.listen(fd, backlog) == 0 else { throw SystemError.last("listen") }
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    /// A connected, non-blocking TCP socket with TCP_NODELAY, or an error after `timeoutMillis`.
    public static func connect(to address: SocketAddress, timeoutMillis: Int32) throws(SystemError) -> Socket {
        let fd = Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .last("socket") }
        let socket = Socket(descriptor: fd)
        do throws(SystemError) {
            let started = address.withSockaddr { Glibc.connect(fd, $0, $1) }
            if started != 0 {
                guard errno == EINPROGRESS || errno == EINTR else { throw SystemError.last("connect \(address)") }
                guard try socket.wait(writable: true, timeoutMillis: timeoutMillis) else {
                    throw SystemError("connect \(address)", errno: ETIMEDOUT)
                }
                var pending: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &size) == 0 else { throw SystemError.last("getsockopt(SO_ERROR)") }
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
        let fd = retryingInterrupts {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(descriptor, $0, &size, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
        }
        guard fd >= 0 else {
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            return .failed(.last("accept4"))
        }
        let socket = Socket(descriptor: fd)
        try? socket.setNoDelay()
        return .accepted(socket, withUnsafePointer(to: &storage) { SocketAddress.from($0) })
    }

    /// One `recv` into `buffer`.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .wouldBlock }
        let n = retryingInterrupts { Glibc.recv(descriptor, base, buffer.count, 0) }
        if n > 0 { return .transferred(n) }
        if n == 0 { return .closed }
        if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
        let error = SystemError.last("recv")
        if error.isDisconnect { return .closed }
        throw error
    }

    /// Bytes the peer has sent that are waiting to be received.
    public var pendingInputBytes: Int { Int(allegro_pending_input(descriptor)) }

    /// One `send` with MSG_NOSIGNAL, so a closed peer is an error, never a SIGPIPE.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .transferred(0) }
        let n = retryingInterrupts { Glibc.send(descriptor, base, bytes.count, Int32(MSG_NOSIGNAL)) }
        if n >= 0 { return .transferred(n) }
        if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
        let error = SystemError.last("send")
        if error.isDisconnect { return .closed }
        throw error
    }

    /// Waits until the socket is readable (or writable) or the timeout passes; true when ready.
    /// A hang-up or error counts as ready: the next call reports it.
    public func wait(writable: Bool = false, timeoutMillis: Int32) throws(SystemError) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
        let n = retryingInterrupts { poll(&entry, 1, timeoutMillis) }
        guard n >= 0 else { throw .last("poll") }
        return n > 0
    }

    /// Waits until the socket is readable, or writable when `writable` is set, or the timeout
    /// passes; false on timeout.
    public func waitReadable(orWritable writable: Bool, timeoutMillis: Int32) throws(SystemError) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN | (writable ? POLLOUT : 0)), revents: 0)
        let n = retryingInterrupts { poll(&entry, 1, timeoutMillis) }
        guard n >= 0 else { throw .last("poll") }
        return n > 0
    }

    public func setNoDelay() throws(SystemError) {
        try setOption(Int32(IPPROTO_TCP), TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)")
    }

    /// The address the socket is bound to (for a listener on port 0: the port the kernel chose).
    public func localAddress() throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &size) }
        }
        guard status == 0 else { throw .last("getsockname") }
        guard let address = withUnsafePointer(to: &storage, { SocketAddress.from($0) }) else {
            throw SystemError("getsockname", errno: EAFNOSUPPORT)
        }
        return address
    }

    /// Sends FIN: the peer reads what was sent, then end of stream.
    public func shutdownWrite() { _ = Glibc.shutdown(descriptor, Int32(SHUT_WR)) }

    public func close() { _ = Glibc.close(descriptor) }

    private func setOption(_ level: Int32, _ name: Int32, _ value: Int32, _ call: String) throws(SystemError) {
        var value = value
        guard setsockopt(descriptor, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw .last(call)
        }
    }
}
