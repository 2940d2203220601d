import AllegroTestSupport
import Foundation
import Testing

/// The relay's main promises on the real binary: many producers in, every record out once, in
/// order, gapless; independent cursors; durable resume; acks that wait for the durable collector.
@Suite(.serialized) struct StreamingTests {
    /// Writes `count` lines `NAME-0` ... to a file.
    static func lines(_ name: String, _ count: Int, in directory: URL) throws -> URL {
        var text = ""
        text.reserveCapacity(count * 12)
        for index in 0 ..< count { text += "\(name)-\(index)\n" }
        let url = directory.appendingPathComponent("\(name).txt")
        try text.write(to: url, atomically: false, encoding: .utf8)
        return url
    }

    @Test func fourProducersMillionRecordsTwoCursors() throws {
        let perProducer = 250_000, producers = 4, total = perProducer * producers
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        // The default 64 MiB ring holds fewer than the million records: the second collector,
        // from the earliest, is served from the spill first and then from the ring.
        let relay = try RelayProcess(["--durable", "timmy"])
        let timmy = try AllegroBinary.start(["tail", "--relay", relay.address, "--collector", "timmy", "--from", "earliest",
                                             "--count", String(total), "--format", "jsonl"])
        let inputs = try (1 ... producers).map { try Self.lines("p\($0)", perProducer, in: scratch) }
        let pushers = try inputs.enumerated().map { index, input in
            try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "p\(index + 1)", "--session", "s\(index + 1)",
                                     "--kind", "load"], stdin: input)
        }
        for pusher in pushers {
            let result = try pusher.wait(timeout: 600)
            #expect(result.status == 0, "push: \(result.stderr)")
            #expect(result.stderr.contains("sent \(perProducer) records, acked \(perProducer)"), "\(result.stderr)")
        }
        let first = try timmy.wait(timeout: 600)
        #expect(first.status == 0, "tail: \(first.stderr)")
        let firstData = first.stdoutData
        let records = TailLine.parse(firstData)
        #expect(records.count == total)

        // Gapless relay sequences, each producer's records all there and in its order.
        var nextPayload = [String: Int]()
        var problems = 0
        for (index, record) in records.enumerated() {
            guard let record, record.relaySequence == UInt64(index + 1) else { problems += 1; continue }
            let expected = nextPayload[record.producer, default: 0]
            if record.payload != "\(record.producer)-\(expected)" { problems += 1 }
            nextPayload[record.producer] = expected + 1
        }
        #expect(problems == 0, "records out of order, missing or misnumbered")
        #expect(nextPayload == ["p1": perProducer, "p2": perProducer, "p3": perProducer, "p4": perProducer])

        // A second collector at another cursor receives exactly the same records from there.
        let from = 2
        let second = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", String(from),
                                            "--count", String(total - from + 1), "--format", "jsonl"], timeout: 600)
        #expect(second.status == 0, "second tail: \(second.stderr)")
        let secondData = second.stdoutData
        let offset = firstData.withUnsafeBytes { raw -> Int in
            var newlines = 0
            for (index, byte) in raw.enumerated() where byte == 0x0A {
                newlines += 1
                if newlines == from - 1 { return index + 1 }
            }
            return -1
        }
        #expect(offset > 0 && secondData == firstData.subdata(in: offset ..< firstData.count),
                "the second cursor's records are byte-identical to the first collector's from \(from)")
        #expect(relay.stop() == 0)
    }

    @Test func durableCollectorResumesAfterItsCommit() throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let relay = try RelayProcess(["--durable", "timmy"])
        let push = try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "resume"],
                                           stdin: try Self.lines("r", 2000, in: scratch))
        let tail = ["tail", "--relay", relay.address, "--collector", "timmy", "--format", "jsonl"]
        let first = try AllegroBinary.run(tail + ["--from", "earliest", "--count", "1000"])
        #expect(first.status == 0, "\(first.stderr)")
        let firstRecords = TailLine.parse(Data(first.stdout.utf8)).compactMap { $0 }
        #expect(firstRecords.map(\.relaySequence) == Array(1 ... 1000))
        #expect(firstRecords.map(\.payload) == (0 ..< 1000).map { "r-\($0)" })
        // Acks come from the spill, not from timmy: the producer is done long before timmy.
        let pushed = try push.wait(timeout: 30)
        #expect(pushed.status == 0 && pushed.stderr.contains("sent 2000 records, acked 2000"), "\(pushed.stderr)")

        let second = try AllegroBinary.run(tail + ["--from", "committed", "--count", "1000"])
        #expect(second.status == 0, "\(second.stderr)")
        let secondRecords = TailLine.parse(Data(second.stdout.utf8)).compactMap { $0 }
        #expect(secondRecords.map(\.relaySequence) == Array(1001 ... 2000), "resumes exactly after the last commit")
        #expect(secondRecords.map(\.payload) == (1000 ..< 2000).map { "r-\($0)" })

        let third = try AllegroBinary.run(tail + ["--from", "committed", "--idle-exit-ms", "300"])
        #expect(third.status == 0 && third.stdout.isEmpty, "nothing left after the last commit")
    }

    @Test func pushAndTailFromAShell() throws {
        let relay = try RelayProcess()
        let tail = try AllegroBinary.start(["tail", "--relay", relay.address, "--from", "earliest", "--count", "3", "--format", "payload"])
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let input = scratch.appendingPathComponent("in")
        try "héllo\n{\"a\":1}\nlast line without newline".write(to: input, atomically: false, encoding: .utf8)
        let push = try AllegroBinary.run(["push", "--relay", relay.address, "--session", "sh", "--kind", "note"], stdin: input)
        #expect(push.status == 0 && push.stderr.contains("sent 3 records, acked 3"), "\(push.stderr)")
        let tailed = try tail.wait(timeout: 30)
        #expect(tailed.status == 0)
        #expect(tailed.stdout == "héllo\n{\"a\":1}\nlast line without newline\n")
        let json = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "1", "--count", "1"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["payload"] as? String == "héllo")
        #expect(object?["session"] as? String == "sh" && object?["kind"] as? String == "note")
        #expect(object?["content_type"] as? String == "text/plain" && object?["relay_seq"] as? Int == 1)
    }
}
