import AllegroClient
import AllegroPosix
import Foundation
import Testing

/// Traffic and disk conditions several end-to-end suites set up the same way.
public enum TestTraffic {
    /// Publishes "PREFIX-0" ... with producer sequences 1 ... `count` and waits for every ack.
    public static func publish(_ relay: RelayProcess, producer: String, prefix: String, count: Int) throws {
        var options = ProducerOptions(relays: [try SocketAddress(parsing: relay.address)], producerID: producer)
        options.reconnectForMillis = 5_000
        let client = try Producer(options)
        for index in 0 ..< count {
            var text = "\(prefix)-\(index)"
            try text.withUTF8 { try client.publish(payload: UnsafeRawBufferPointer($0)) }
        }
        try client.close(timeoutMillis: 10_000)
    }

    /// `allegro push` of `lines` with the given header fields; expects every line acked.
    public static func push(_ relay: RelayProcess, _ lines: [String], producer: String, session: String? = nil,
                     kind: String? = nil) throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = scratch.appendingPathComponent("lines")
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: false, encoding: .utf8)
        var arguments = ["push", "--relay", relay.address, "--producer", producer]
        if let session { arguments += ["--session", session] }
        if let kind { arguments += ["--kind", kind] }
        let result = try AllegroBinary.run(arguments, stdin: input, timeout: 120)
        #expect(result.status == 0 && result.stderr.contains("acked \(lines.count)"), "\(result.stderr)")
    }

    /// Settings for a relay whose spill `freezeSpill` can stop: segments that grow block by
    /// block. With zeros written ahead (the default) a frozen size still leaves room to write.
    public static let growingSpill = ["--set", "spill_preallocate_bytes=0"]

    /// From now on no file of the relay may grow: every spill write fails with EFBIG, as on a
    /// full or failing disk (directory permissions cannot do this: the tests run as root). The
    /// relay must have been started with `growingSpill`.
    public static func freezeSpill(of relay: RelayProcess) throws {
        let segment = try SpillFiles.segments(in: relay.dataDirectory).last
        let size = try segment.map { try FileManager.default.attributesOfItem(atPath: $0.path)[.size] as? Int ?? 0 } ?? 0
        #expect(try setFileSizeLimit(of: relay.pid, to: String(size)))
    }

    public static func thawSpill(of relay: RelayProcess) throws {
        #expect(try setFileSizeLimit(of: relay.pid, to: "unlimited"))
    }

    /// util-linux `prlimit` on a running process.
    private static func setFileSizeLimit(of pid: Int32, to value: String) throws -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        process.arguments = ["--pid", String(pid), "--fsize=\(value):unlimited"]
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// Records pushed as "PRODUCER-INDEX" lines: returns how many of each producer arrived, and
    /// counts problems: a payload out of its producer's order (lost or duplicated), relay
    /// sequences not increasing (or, with `gapless`, not consecutive), or inside a skip.
    public static func audit(_ records: [TailLine], skips: [ClosedRange<UInt64>] = [], gapless: Bool = false)
        -> (counts: [String: Int], problems: Int) {
        var next = [String: Int]()
        var previous: UInt64 = 0
        var problems = 0
        for record in records {
            let ordered = gapless ? record.relaySequence == previous + 1 : record.relaySequence > previous
            if !ordered || skips.contains(where: { $0.contains(record.relaySequence) }) { problems += 1 }
            previous = record.relaySequence
            if record.payload != "\(record.producer)-\(next[record.producer, default: 0])" { problems += 1 }
            next[record.producer, default: 0] += 1
        }
        return (next, problems)
    }
}

/// Four `allegro push` processes (producers PREFIX1 ... PREFIX4) fed "PRODUCER-INDEX" lines
/// through pipes, so a test can restart or kill the relay between two feeds.
public final class PipedPushers {
    /// Writes the lines; may be used from another thread.
    public struct Feeder: Sendable {
        public let prefix: String
        public let pipes: [Pipe]

        /// Writes lines `range` for every producer (blocks while the pushers do not read).
        public func feed(_ range: Range<Int>) {
            for start in stride(from: range.lowerBound, to: range.upperBound, by: 2_500) {
                for (index, pipe) in pipes.enumerated() {
                    let text = (start ..< min(start + 2_500, range.upperBound)).map { "\(prefix)\(index + 1)-\($0)\n" }.joined()
                    pipe.fileHandleForWriting.write(Data(text.utf8))
                }
            }
        }
    }

    public let feeder: Feeder
    private let pushers: [AllegroBinary.Running]

    public init(relay: RelayProcess, prefix: String) throws {
        let pipes = (1 ... 4).map { _ in Pipe() }
        pushers = try pipes.enumerated().map { index, pipe in
            try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "\(prefix)\(index + 1)"], pipe: pipe)
        }
        feeder = Feeder(prefix: prefix, pipes: pipes)
    }

    public func feed(_ range: Range<Int>) { feeder.feed(range) }

    /// Ends the input and expects every pusher to exit 0 with all `perProducer` lines acked.
    public func finish(perProducer: Int) throws {
        for pipe in feeder.pipes { try pipe.fileHandleForWriting.close() }
        for pusher in pushers {
            let result = try pusher.wait(timeout: 300)
            #expect(result.status == 0 && result.stderr.contains("acked \(perProducer)"), "\(result.stderr)")
        }
    }
}
