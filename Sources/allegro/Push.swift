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
        and acknowledged to standard error. Reconnects and resends on a lost connection. The token
        defaults to $ALLEGRO_PRODUCER_TOKEN.
        """
    )

    @Option(help: "Relay address HOST:PORT (repeat for failover, tried in order).") var relay: [String] = ["127.0.0.1:7400"]
    @Option(help: "Producer token.") var token: String?
    @Option(help: "Producer id (default: push-HOST-PID).") var producer: String?
    @Option(help: "Session id for every record.") var session = ""
    @Option(help: "Event kind for every record.") var kind = ""
    @Option(name: .customLong("content-type"), help: "Content type for every record.") var contentType = "text/plain"
    @Option(help: "Records per batch.") var batch = 512

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
        do {
            let producer = try Producer(options)
            let first = producer.nextSequence
            try LineReader().forEachLine { line in
                try producer.publish(session: session, kind: kind, contentType: contentType, payload: line)
            }
            let sent = producer.nextSequence - first
            try producer.close()
            StandardStreams.error("allegro push: sent \(sent) records, acked \(producer.ackedThrough + 1 - first)")
        } catch {
            StandardStreams.error("allegro push: \(error)")
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
