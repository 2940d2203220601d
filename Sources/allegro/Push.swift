import AllegroClient
import AllegroPosix
import ArgumentParser
import Foundation

/// `allegro push`: each line of standard input becomes one record's payload.
struct Push: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish standard input as records: each line, each length-prefixed record, or the whole.",
        discussion: """
        Exits 0 once every record is acknowledged by the relay, after printing how many were sent \
        and acknowledged to standard error. Reconnects and resends on a lost connection, saying at \
        once why it is retrying. On a terminal it shows records sent and acknowledged as it goes; \
        in a pipe it prints only the summary. The token defaults to $ALLEGRO_PRODUCER_TOKEN.

        --input lines (the default): each line is one record, without its LF and without a CR \
        just before it (CRLF text). An empty line is an empty record, counted in the summary; \
        --skip-empty leaves them out. --input length-prefixed: each record is a 4-byte little-endian \
        byte count and then that many bytes, for binary data. --input whole: all of standard input \
        is one record. The content type is text/plain for lines and application/octet-stream \
        otherwise, unless --content-type says.

        A record must fit in one frame of the relay's max_frame_bytes (1 MiB by default): a \
        record may be that less 45 bytes of headers and the lengths of the producer id, session, \
        kind and content type. A longer one stops the push with its number and what was sent and \
        acknowledged before it.
        """
    )

    @Option(help: "Relay address HOST:PORT (repeat for failover, tried in order).") var relay: [String] = ["127.0.0.1:7400"]
    @Option(help: "Producer token.") var token: String?
    @Option(help: "Producer id (default: push-HOST-PID).") var producer: String?
    @Option(help: "Session id for every record.") var session = ""
    @Option(help: "Event kind for every record.") var kind = ""
    @Option(name: .customLong("content-type"), help: "Content type for every record (default: text/plain for lines, else application/octet-stream).")
    var contentType: String?
    @Option(help: "How standard input is cut into records: lines, length-prefixed or whole.") var input: InputMode = .lines
    @Flag(name: .customLong("skip-empty"), help: "Send no record for an empty line.") var skipEmpty = false
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
        if skipEmpty && input != .lines { throw ValidationError("--skip-empty is for --input lines") }
        options.reconnectForMillis = Int(connectTimeout * 1000)
        let reporter = ConnectionReporter(command: "allegro push")
        options.onConnection = { reporter.report($0) }
        let contentType = contentType ?? (input == .lines ? "text/plain" : "application/octet-stream")
        let first = options.firstSequence
        var producer: Producer?
        var progress = PushProgress(first: first)
        var number = 0, empty = 0
        var warnedNotText = !contentType.hasPrefix("text/")
        var cutShort = false
        let unit = input == .lines ? "line" : "record"
        do {
            let connected = try Producer(options)
            producer = connected
            try InputRecords(mode: input, maxRecordBytes: connected.maxFrameBytes).forEach { record, cut in
                number += 1
                cutShort = cut
                if record.isEmpty {
                    if skipEmpty { return }
                    empty += 1
                }
                if !warnedNotText && String(validating: record, as: UTF8.self) == nil {
                    warnedNotText = true
                    StandardStreams.error("allegro push: \(unit) \(number) is not UTF-8 text, yet labelled \(contentType); "
                                          + "for binary data use --input length-prefixed or --input whole")
                }
                try connected.publish(session: session, kind: kind, contentType: contentType, payload: record)
                progress.tick(connected)
            }
            try connected.close()
            progress.finish()
            let sent = connected.nextSequence - first
            let empties = empty > 0 ? " (\(empty) empty)" : ""
            StandardStreams.error("allegro push: sent \(counted(sent, "record"))\(empties), acked \(connected.ackedThrough + 1 - first)")
        } catch {
            progress.finish()
            // A record too large stops the push; the records before it still go out.
            if case .recordTooLarge? = error as? ClientError { try? producer?.close() }
            if error is BadInput { try? producer?.close() }
            let sent = (producer?.nextSequence ?? first) - first
            let acked = (producer?.ackedThrough ?? first - 1) + 1 - first
            if case let .recordTooLarge(tooLarge)? = error as? ClientError, let producer {
                StandardStreams.error("allegro push: \(unit) \(number) is \(cutShort ? "more than " : "")\(tooLarge.length) bytes; "
                                      + "the most one record can carry here is \(tooLarge.limit) (the relay's max_frame_bytes is "
                                      + "\(producer.maxFrameBytes), less the record's headers and fields); before it, "
                                      + "\(counted(sent, unit)) sent, \(acked) acked")
            } else if let bad = error as? BadInput {
                StandardStreams.error("allegro push: \(bad); before it, \(counted(sent, "record")) sent, \(acked) acked")
            } else {
                let so = sent > 0 ? " (sent \(counted(sent, "record")), acked \(acked): unacked ones were not stored)" : ""
                StandardStreams.error("allegro push: \(error)\(so)")
            }
            throw ExitCode.failure
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
