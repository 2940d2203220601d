import AllegroPosix
import Foundation

/// A blocking view of one non-blocking TCP socket, for the harness's own threads: write all,
/// read some, with poll() waits.
final class Link: @unchecked Sendable {
    // @unchecked: each Link is used by one thread at a time (created, then handed to its thread).
    let socket: Socket
    private(set) var closed = false

    init(_ address: String) throws {
        socket = try Socket.connect(to: SocketAddress(parsing: address), timeoutMillis: 5000)
    }

    init(socket: Socket) { self.socket = socket }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        socket.close()
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            switch try socket.send(UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
            case let .transferred(n): offset += n
            case .wouldBlock: _ = try socket.wait(writable: true, timeoutMillis: 1000)
            case .closed: throw SystemError("send", errno: EPIPE)
            }
        }
    }

    func send(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try send($0) } }

    /// Reads what is there, waiting up to `timeoutMillis`; 0 bytes on timeout; throws at end.
    func receive(into buffer: UnsafeMutableRawBufferPointer, timeoutMillis: Int32) throws -> Int {
        switch try socket.receive(into: buffer) {
        case let .transferred(n): return n
        case .closed: throw SystemError("recv", errno: ECONNRESET)
        case .wouldBlock:
            guard try socket.wait(timeoutMillis: timeoutMillis) else { return 0 }
            switch try socket.receive(into: buffer) {
            case let .transferred(n): return n
            case .closed: throw SystemError("recv", errno: ECONNRESET)
            case .wouldBlock: return 0
            }
        }
    }

    /// Non-blocking read of whatever is there (acks the harness does not need), so a peer's
    /// answers never back up.
    func drain(_ scratch: UnsafeMutableRawBufferPointer) {
        while case .transferred? = try? socket.receive(into: scratch) {}
    }
}

/// A child process (relay or peer server) stopped when the harness is done with it.
final class Server {
    let process = Process()
    let name: String

    /// `environment`: added to the harness's own (replacing what it has under the same names).
    init(_ name: String, _ executable: String, _ arguments: [String], log: URL, environment: [String: String] = [:]) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    func stop(signal: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(1000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// CPU seconds (user + system) the process has used so far.
    var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Waits until something accepts connections at `address`.
func waitForListener(_ address: String, seconds: Double = 10) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let link = try? Link(address) { link.close(); return }
        usleep(10_000)
    }
    throw SystemError("connect \(address)", errno: ETIMEDOUT)
}

/// A free loopback port (bound and released; a tiny race is acceptable for a harness).
func freePort() throws -> Int {
    let socket = try Socket.listen(on: SocketAddress(parsing: "127.0.0.1:0"))
    defer { socket.close() }
    return Int(try socket.localAddress().port)
}
