import AllegroClient
import AllegroPosix
import Foundation
import Testing

/// What a collector sees after crashes (kill -9 of the real binary): the stream stays a stream.
@Suite(.serialized) struct CrashTruthTests {
    /// Reads a collector until `records` records have come (or 10 s of silence), checking that
    /// sequences and SKIPs only go forward; returns the records' sequences and the skips.
    func read(_ collector: Collector, records: Int) throws -> (sequences: [UInt64], skips: [ClosedRange<UInt64>]) {
        var sequences: [UInt64] = [], skips: [ClosedRange<UInt64>] = []
        while sequences.count < records, let event = try collector.next(timeoutMillis: 10_000) {
            switch event {
            case let .record(record): sequences.append(record.relaySequence)
            case let .skip(first, last): skips.append(first ... last)
            }
        }
        return (sequences, skips)
    }

    @Test func twoCrashesInARowLeaveSkipsThatNeverOverlapAndEveryCollectorGetsPast() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let first = try RelayProcess(["--durable", "timmy"], dataDirectory: data)
        try TestTraffic.push(first, (1 ... 10).map { "a-\($0)" }, producer: "a")
        first.crash()
        let second = try RelayProcess(["--durable", "timmy"], dataDirectory: data)
        second.crash()
        let third = try RelayProcess(["--durable", "timmy"], dataDirectory: data)
        try TestTraffic.push(third, ["b-1", "b-2"], producer: "b")

        // `allegro tail` from the start: every record, and exit 0 (it checks the stream's order).
        let tail = try AllegroBinary.run(["tail", "--relay", third.address, "--from", "earliest", "--count", "12",
                                          "--format", "jsonl"], timeout: 60)
        #expect(tail.status == 0, "\(tail.stderr)")
        let lines = tail.stdout.split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("{\"relay_seq\":") }.count == 12, "\(tail.stdout.prefix(2000))")

        // Timmy, durable, reads half, commits, and resumes twice from his committed cursor.
        var options = CollectorOptions(relays: [try SocketAddress(parsing: third.address)])
        options.name = "timmy"
        options.start = .earliest
        let timmy = try Collector(options)
        let early = try read(timmy, records: 6)
        #expect(early.sequences == Array(1 ... 6))
        try timmy.commit(through: 6)
        timmy.close()
        for round in 1 ... 2 {
            options.start = .committed
            let again = try Collector(options)
            let rest = try read(again, records: 6)
            #expect(rest.sequences.prefix(4) == [7, 8, 9, 10], "round \(round): \(rest.sequences)")
            #expect(rest.sequences.count == 6, "round \(round): the two records after the crashes arrive")
            #expect(rest.skips.count >= 1, "round \(round): the crashed runs' numbers are marked skipped")
            // Skips and records only go forward: nothing overlaps, nothing repeats.
            var events = rest.skips.map { ($0.lowerBound, $0.upperBound) } + rest.sequences.map { ($0, $0) }
            events.sort { $0.0 < $1.0 }
            for (earlier, later) in zip(events, events.dropFirst()) {
                #expect(later.0 > earlier.1, "round \(round): \(earlier) then \(later)")
            }
            if let lastSkip = rest.skips.last, let lastRecord = rest.sequences.last {
                #expect(lastSkip.upperBound < lastRecord)
            }
            again.close()
        }
    }
}
