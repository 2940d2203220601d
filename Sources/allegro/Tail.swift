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
        jsonl prints the header fields and the payload (as "payload" when it is UTF-8 text, else
        as "payload_hex"), and a {"skip_first":N,"skip_last":M} line where the relay marks numbers
        it never assigned (after a crash); payload prints the payload bytes alone. With --collector NAME the
        subscription is durable: what was printed is committed, and --from committed resumes
        after it. With --count N it exits 0 after N records. The token defaults to
        $ALLEGRO_COLLECTOR_TOKEN.
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

    func run() throws {
        ProcessSetup.resetSignals()
        var options: CollectorOptions
        do {
            options = CollectorOptions(relays: try relay.map { text throws(SocketAddress.ParseError) in try SocketAddress(parsing: text) })
        } catch {
            throw ValidationError(error.description)
        }
        switch from {
        case "earliest": options.start = .earliest
        case "latest": options.start = .latest
        case "committed": options.start = .committed
        default:
            guard let sequence = UInt64(from), sequence >= 1 else {
                throw ValidationError("--from must be earliest, latest, committed or a relay sequence (1 or more), not \(from)")
            }
            options.start = .sequence(sequence)
        }
        if options.start == .committed && collector == nil {
            throw ValidationError("--from committed needs --collector NAME")
        }
        if live && collector != nil {
            throw ValidationError("--live is for ephemeral tails: a durable collector is given only records that are fsync'd")
        }
        options.name = collector ?? ""
        options.live = live
        options.clientID = collector ?? "tail-\(ProcessInfo.processInfo.processIdentifier)"
        options.token = token ?? ProcessInfo.processInfo.environment["ALLEGRO_COLLECTOR_TOKEN"] ?? ""
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        do {
            try stream(options)
        } catch {
            StandardStreams.error("allegro tail: \(error)")
            throw ExitCode.failure
        }
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
