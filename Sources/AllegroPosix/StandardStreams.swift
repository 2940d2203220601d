import Glibc

/// Writes whole lines to standard error or output with write(2): no buffering, so a line is
/// out before the process can die, and lines from one thread never interleave mid-line.
public enum StandardStreams {
    public static func error(_ line: String) { write(line, to: 2) }
    public static func output(_ line: String) { write(line, to: 1) }

    /// True when standard output is a pipe whose reader has gone (`allegro tail | head` after
    /// head exits): a command with nothing to write yet can end now instead of at its next write.
    public static var outputReaderGone: Bool {
        var entry = pollfd(fd: 1, events: 0, revents: 0)
        let ready = SystemCall.run(.poll) { Glibc.poll(&entry, 1, 0) }
        guard case let .value(count) = ready, count > 0 else { return false }
        return entry.revents & Int16(POLLERR) != 0
    }

    /// True when standard error is a terminal (a person watching, not a pipe or a file).
    public static var errorIsTerminal: Bool { isatty(2) == 1 }

    /// Replaces the terminal's current line on standard error with `text` (no newline): for
    /// progress that updates in place. Only for a terminal (`errorIsTerminal`).
    public static func errorStatus(_ text: String) { write("\r\u{1B}[K" + text, to: 2, newline: false) }

    private static func write(_ line: String, to descriptor: Int32, newline: Bool = true) {
        var text = line
        if newline && !text.hasSuffix("\n") { text += "\n" }
        text.withUTF8 { bytes in
            guard let base = bytes.baseAddress else { return }
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(descriptor, base + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

/// Reads a file descriptor (standard input by default) in large chunks.
public struct InputReader {
    public let descriptor: Int32

    public init(descriptor: Int32 = 0) { self.descriptor = descriptor }

    /// One read(2) into `buffer`: the byte count, 0 at end of input.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        let fd = descriptor, count = buffer.count
        return try SystemCall.run(.read) { Glibc.read(fd, base, count) }.get("read")
    }
}

/// Buffers output and writes it to a descriptor (standard output by default) in large writes.
/// A failed write is kept and thrown by every later `flush`, so a caller that acts on "written"
/// (a collector committing what it printed) never acts on bytes that were lost.
public final class BufferedOutput {
    public let descriptor: Int32
    private var bytes: [UInt8] = []
    private let threshold: Int
    private var failure: SystemError?

    public init(descriptor: Int32 = 1, threshold: Int = 256 * 1024) {
        self.descriptor = descriptor
        self.threshold = threshold
        bytes.reserveCapacity(threshold + 4096)
    }

    public func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        if bytes.count >= threshold { try? flush() }
    }

    public func append(_ raw: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: raw)
        if bytes.count >= threshold { try? flush() }
    }

    /// Writes everything buffered; throws the first write failure, now or from before.
    public func flush() throws(SystemError) {
        if let failure {
            bytes.removeAll(keepingCapacity: true)  // never written, never to be: bounded
            throw failure
        }
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let fd = descriptor, at = offset
                switch SystemCall.run(.write, { Glibc.write(fd, base + at, raw.count - at) }) {
                case let .value(n): offset += n
                case let .failed(code): self.failure = SystemError("write", errno: code); return
                }
            }
        }
        bytes.removeAll(keepingCapacity: true)
        if let failure { throw failure }
    }
}
