import Glibc

/// Writes whole lines to standard error or output with write(2): no buffering, so a line is
/// out before the process can die, and lines from one thread never interleave mid-line.
public enum StandardStreams {
    public static func error(_ line: String) { write(line, to: 2) }
    public static func output(_ line: String) { write(line, to: 1) }

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
public final class BufferedOutput {
    public let descriptor: Int32
    private var bytes: [UInt8] = []
    private let threshold: Int

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

    /// Writes everything buffered.
    public func flush() throws(SystemError) {
        var failure: SystemError?
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let fd = descriptor, at = offset
                switch SystemCall.run(.write, { Glibc.write(fd, base + at, raw.count - at) }) {
                case let .value(n): offset += n
                case let .failed(code): failure = SystemError("write", errno: code); return
                }
            }
        }
        bytes.removeAll(keepingCapacity: true)
        if let failure { throw failure }
    }
}
