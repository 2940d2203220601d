import AllegroClient
import AllegroPosix
import ArgumentParser
import Foundation

/// `allegro push`: each line of standard input becomes one record's payload.
struct Push: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish each line of standard input as one record.",
        discussion: """
        Exits 0 once every record is acknowledged by the relay, after printing how many were sent
        and acknowledged to standard error. Reconnects and resends on a lost connection, saying at
        once why it is retrying. On a terminal it shows records sent and acknowledged as it goes;
        in a pipe it prints only the summary. The token defaults to $ALLEGRO_PRODUCER_TOKEN.

        One line is one record, and a record must fit in one frame of the relay's
        max_frame_bytes (1 MiB by default): a line may be that less 45 bytes of headers and the
        lengths of the producer id, session, kind and content type. A longer line stops the push
        with its line number and what was sent and acknowledged before it.
        """
    )

    @Option(help: "Relay address HOST:PORT (repeat for failover, tried in order).") var relay: [String] = ["127.0.0.1:7400"]
    @Option(help: "Producer token.") var token: String?
    @Option(help: "Producer id (default: push-HOST-PID).") var producer: String?
    @Option(help: "Session id for every record.") var session = ""
    @Option(help: "Event kind for every record.") var kind = ""
    @Option(name: .customLong("content-type"), help: "Content type for every record.") var contentType = "text/plain"
    @Option(help: "Records per batch.") var batch = 512
    @Option(name: .customLong("connect-timeout"), help: "Seconds to keep trying to reach the relay, at the start and after a lost connection.")
    var connectTimeout: Double = 30

    func run() throws {
        ProcessSetup.resetSignals()
        let addresses: [SocketAddress]
        do { addresses = try relay.map { text throws(SocketAddress.ParseError) in try SocketAddress(parsing: text) } } catch {
            throw ValidationError(error.description)
        }
        var options = ProducerOptions(relays: addresses, producerID: producer ?? "push-\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)")
        options.token = token ?? ProcessInfo.processInfo.environment["ALLEGRO_PRODUCER_TOKEN"] ?? ""
        // A fresh process has no memory of the sequences it used before: start from the clock.
        options.firstSequence = Clock.wallNanos / 1000
        options.batchRecords = max(batch, 1)
        guard connectTimeout > 0, connectTimeout <= 86_400 else {
            throw ValidationError("--connect-timeout must be more than 0 and at most 86400 seconds")
        }
        options.reconnectForMillis = Int(connectTimeout * 1000)
        let reporter = ConnectionReporter(command: "allegro push")
        options.onConnection = { reporter.report($0) }
        let first = options.firstSequence
        var producer: Producer?
        var progress = PushProgress(first: first)
        var lineNumber = 0
        do {
            let connected = try Producer(options)
            producer = connected
            try LineReader().forEachLine { line in
                lineNumber += 1
                try connected.publish(session: session, kind: kind, contentType: contentType, payload: line)
                progress.tick(connected)
            }
            try connected.close()
            progress.finish()
            let sent = connected.nextSequence - first
            StandardStreams.error("allegro push: sent \(counted(sent, "record")), acked \(connected.ackedThrough + 1 - first)")
        } catch {
            progress.finish()
            // A line too long for a record stops the push; the lines before it still go out.
            if case .recordTooLarge? = error as? ClientError { try? producer?.close() }
            let sent = (producer?.nextSequence ?? first) - first
            let acked = (producer?.ackedThrough ?? first - 1) + 1 - first
            let so = sent > 0 ? " (sent \(counted(sent, "record")), acked \(acked): unacked ones were not stored)" : ""
            if case let .recordTooLarge(tooLarge)? = error as? ClientError, let producer {
                StandardStreams.error("allegro push: line \(lineNumber) is \(tooLarge.length) bytes; the most one record can carry here is "
                                      + "\(tooLarge.limit) (the relay's max_frame_bytes is \(producer.maxFrameBytes), less the record's "
                                      + "headers and fields); before it, \(counted(sent, "line")) sent, \(acked) acked")
            } else {
                StandardStreams.error("allegro push: \(error)\(so)")
            }
            throw ExitCode.failure
        }
    }
}

/// Splits standard input into lines (without the newline) with no copy per line.
struct LineReader {
    func forEachLine(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let input = InputReader()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var filled = 0
        while true {
            if filled == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }
            let n = try buffer.withUnsafeMutableBytes { raw in
                try input.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
            }
            let atEnd = n == 0
            filled += n
            let consumed = try buffer.withUnsafeBytes { raw -> Int in
                var start = 0
                let bytes = UnsafeRawBufferPointer(rebasing: raw[..<filled])
                while let newline = bytes[start...].firstIndex(of: 0x0A) {
                    try body(UnsafeRawBufferPointer(rebasing: bytes[start ..< newline]))
                    start = newline + 1
                }
                if atEnd && start < filled {
                    try body(UnsafeRawBufferPointer(rebasing: bytes[start ..< filled]))
                    start = filled
                }
                return start
            }
            if consumed > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    if let base = raw.baseAddress, filled > consumed {
                        base.copyMemory(from: base + consumed, byteCount: filled - consumed)
                    }
                }
                filled -= consumed
            }
            if atEnd { return }
        }
    }
}

/// Records sent and acknowledged, redrawn once a second in place while standard error is a
/// terminal; nothing in a pipe.
struct PushProgress {
    private let first: UInt64
    private let enabled = StandardStreams.errorIsTerminal
    private let startedNanos = Clock.monotonicNanos
    private var nextDrawNanos = Clock.monotonicNanos + 1_000_000_000
    private var lines = 0
    private var drawn = false

    init(first: UInt64) { self.first = first }

    mutating func tick(_ producer: Producer) {
        guard enabled else { return }
        lines += 1
        // Look at the clock every 256 lines only: a line costs well under a microsecond.
        guard lines & 255 == 0 else { return }
        let now = Clock.monotonicNanos
        guard now >= nextDrawNanos else { return }
        nextDrawNanos = now + 1_000_000_000
        let sent = producer.nextSequence - first, acked = producer.ackedThrough + 1 - first
        let rate = Double(sent) / (Double(now - startedNanos) / 1e9)
        StandardStreams.errorStatus("allegro push: sent \(sent), acked \(acked), \(Int(rate)) records/s")
        drawn = true
    }

    /// Ends the progress line so the summary starts on a line of its own.
    mutating func finish() {
        if drawn { StandardStreams.errorStatus("") }
        drawn = false
    }
}
