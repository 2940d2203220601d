import AllegroClient
import AllegroPosix
import AllegroWire
import ArgumentParser
import Foundation

/// `allegro tail`: prints records as they arrive.
struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe and print one record per line.",
        discussion: """
        jsonl prints the header fields and the payload (as "payload" when it is UTF-8 text, else \
        as "payload_hex"), and a {"skip_first":N,"skip_last":M} line where the relay marks numbers \
        it never assigned (after a crash); payload prints the payload bytes alone.

        With --collector NAME the subscription is durable: what was printed is committed, and \
        --from committed resumes after it. With --count N it exits 0 after N records. The token \
        defaults to $ALLEGRO_COLLECTOR_TOKEN.

        When the relay goes away (a restart, a lost network) tail says so, keeps trying for \
        --connect-timeout seconds, and resumes just after the last record it printed: no gap, no \
        duplicate. --no-reconnect makes one attempt and ends on a lost connection (exit 1), for \
        scripts. A reader that goes away (tail | head) ends it quietly.
        """
    )

    enum Format: String, ExpressibleByArgument { case jsonl, payload }

    @Option(help: "Relay address HOST:PORT (repeat to try several in order).") var relay: [String] = ["127.0.0.1:7400"]
    @Option(help: "Collector token.") var token: String?
    @Option(help: "Where to start: earliest, latest, committed or a relay sequence.") var from = "latest"
    @Option(help: "Durable collector name (configured on the relay).") var collector: String?
    @Option(help: "Exit after this many records.") var count: Int?
    @Flag(help: "Receive records before they are fsync'd (lower lag; not with --collector: after a relay crash such a record may be gone or come again under a new number).")
    var live = false
    @Option(help: "Output format: jsonl or payload.") var format: Format = .jsonl
    @Option(name: .customLong("idle-exit-ms"), help: "Exit 0 when nothing arrives for this long.") var idleExitMillis: Int?
    @Option(name: .customLong("connect-timeout"), help: "Seconds to keep trying to reach the relay, at the start and after a lost connection.")
    var connectTimeout: Double = 30
    @Flag(name: .customLong("no-reconnect"), help: "One attempt to connect; a lost connection ends tail with exit 1.")
    var noReconnect = false

    func run() throws {
        ProcessSetup.resetSignals()
        let options: CollectorOptions
        do { options = try collectorOptions() } catch let problem as UsageProblem {
            StandardStreams.error("allegro tail: \(problem.message) (allegro tail --help says more)")
            throw ExitCode.validationFailure
        }
        do {
            try stream(options)
        } catch let error as SystemError where error.isBrokenPipe {
            return  // the reader left (tail | head): nothing more to say
        } catch {
            StandardStreams.error("allegro tail: \(error)")
            throw ExitCode.failure
        }
    }

    /// A bad flag value, said in one line without the whole usage.
    struct UsageProblem: Error { var message: String }

    private func collectorOptions() throws -> CollectorOptions {
        var options: CollectorOptions
        do {
            options = CollectorOptions(relays: try relay.map { text throws(SocketAddress.ParseError) in try SocketAddress(parsing: text) })
        } catch {
            throw UsageProblem(message: error.description)
        }
        switch from {
        case "earliest": options.start = .earliest
        case "latest": options.start = .latest
        case "committed": options.start = .committed
        default:
            guard let sequence = UInt64(from), sequence >= 1 else {
                throw UsageProblem(message: "--from must be earliest, latest, committed or a relay sequence (1 or more), not \(from)")
            }
            options.start = .sequence(sequence)
        }
        if options.start == .committed && collector == nil {
            throw UsageProblem(message: "--from committed needs --collector NAME")
        }
        if live && collector != nil {
            throw UsageProblem(message: "--live is for ephemeral tails: a durable collector is given only records that are fsync'd")
        }
        if let count, count < 1 { throw UsageProblem(message: "--count must be at least 1, not \(count)") }
        guard connectTimeout > 0, connectTimeout <= 86_400 else {
            throw UsageProblem(message: "--connect-timeout must be more than 0 and at most 86400 seconds")
        }
        options.name = collector ?? ""
        options.live = live
        options.clientID = collector ?? "tail-\(ProcessInfo.processInfo.processIdentifier)"
        options.token = token ?? ProcessInfo.processInfo.environment["ALLEGRO_COLLECTOR_TOKEN"] ?? ""
        options.reconnectForMillis = noReconnect ? 0 : Int(connectTimeout * 1000)
        let reporter = ConnectionReporter(command: "allegro tail")
        options.onConnection = { reporter.report($0) }
        return options
    }

    private func stream(_ options: CollectorOptions) throws {
        let collector = try Collector(options)
        let output = BufferedOutput()
        let durable = !options.name.isEmpty
        var printed = 0
        var uncommitted = 0
        var lastCommitAt = Clock.monotonicNanos
        var idleSince = Clock.monotonicNanos
        /// Commits what has been written out (never what is still in our buffer).
        func commitPrinted() throws {
            try output.flush()
            if durable && collector.lastSequence > collector.committed && uncommitted > 0 {
                try collector.commit(through: collector.lastSequence)
                uncommitted = 0
            }
            lastCommitAt = Clock.monotonicNanos
        }
        while count.map({ printed < $0 }) ?? true {
            guard let event = try collector.next(timeoutMillis: 100) else {
                try commitPrinted()
                if StandardStreams.outputReaderGone { break }  // tail | head: head has left
                if let idleExitMillis, Clock.monotonicNanos - idleSince > UInt64(idleExitMillis) * 1_000_000 { break }
                continue
            }
            idleSince = Clock.monotonicNanos
            guard case let .record(record) = event else {
                if case let .skip(first, last) = event, format == .jsonl {
                    output.append("{\"skip_first\":\(first),\"skip_last\":\(last)}\n")
                }
                continue
            }
            switch format {
            case .jsonl: output.append(RecordLine.json(record))
            case .payload:
                output.append(record.payload.bytes)
                output.append("\n")
            }
            printed += 1
            uncommitted += 1
            if uncommitted >= 4096 || Clock.monotonicNanos - lastCommitAt > 100_000_000 { try commitPrinted() }
        }
        try commitPrinted()
        if durable && collector.lastSequence > 0 && printed > 0 {
            try collector.waitCommitted(through: collector.lastSequence)
        }
        collector.close()
    }
}

/// One delivered record as a line of JSON.
enum RecordLine {
    static func json(_ record: DeliveredRecord) -> String {
        var json = JSONObject()
        FrameJSON.addHeader(of: record, to: &json)
        if let text = String(validating: record.payload.bytes, as: UTF8.self) {
            json.add("payload", text)
        } else {
            json.add("payload_hex", FrameJSON.hex(record.payload))
        }
        return json.text + "\n"
    }
}
