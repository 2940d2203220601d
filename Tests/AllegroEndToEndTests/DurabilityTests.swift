import AllegroTestSupport
import AllegroClient
import AllegroPosix
import AllegroStore
import Foundation
import Testing

/// The durability promises on the real binary and real files: outages, kill -9, damaged
/// spill files, restarts, retention and a failing disk.
@Suite(.serialized) struct DurabilityTests {
    func relays(_ relay: RelayProcess) throws -> [SocketAddress] { [try SocketAddress(parsing: relay.address)] }

    func push(_ relay: RelayProcess, _ lines: [String], producer: String) throws {
        try TestTraffic.push(relay, lines, producer: producer)
    }

    /// Every record line of a jsonl tail, and its skip markers.
    func tail(_ relay: RelayProcess, _ arguments: [String]) throws -> (records: [TailLine], skips: [ClosedRange<UInt64>]) {
        let result = try AllegroBinary.run(["tail", "--relay", relay.address, "--format", "jsonl"] + arguments, timeout: 300)
        #expect(result.status == 0, "\(result.stderr)")
        var records: [TailLine] = [], skips: [ClosedRange<UInt64>] = []
        for line in result.stdout.split(separator: "\n") {
            if line.hasPrefix("{\"skip_first\":") {
                let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { UInt64($0) }
                if numbers.count == 2 { skips.append(numbers[0] ... numbers[1]) }
            } else if let record = TailLine.parse(Data(line.utf8)).first ?? nil {
                records.append(record)
            } else {
                Issue.record("unreadable tail line: \(line.prefix(120))")
            }
        }
        return (records, skips)
    }

    @Test func durableCollectorAwayForAMillionRecords() throws {
        let relay = try RelayProcess(["--durable", "timmy"])
        try push(relay, (0 ..< 10).map { "warm-\($0)" }, producer: "warm")
        let warm = try tail(relay, ["--collector", "timmy", "--from", "earliest", "--count", "10"])
        #expect(warm.records.map(\.relaySequence) == Array(1 ... 10))

        // Timmy is away while a million records arrive from four producers.
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let pushers = try (1 ... 4).map { index in
            try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "o\(index)"],
                                    stdin: try StreamingTests.lines("o\(index)", 250_000, in: scratch))
        }
        for pusher in pushers {
            let result = try pusher.wait(timeout: 600)
            #expect(result.status == 0 && result.stderr.contains("acked 250000"), "\(result.stderr)")
        }
        let spilled = try SpillFiles.segments(in: relay.dataDirectory).flatMap { try SpillFiles.blocks(of: $0) }
        #expect(spilled.reduce(0) { $0 + $1.records } == 1_000_010, "every record is in the spill")

        // Timmy comes back from its committed cursor: every record once, in order, then live ones.
        var options = CollectorOptions(relays: try relays(relay))
        options.name = "timmy"
        options.start = .committed
        let timmy = try Collector(options)
        #expect(timmy.subscription.firstSequence == 11)
        var expected: UInt64 = 11
        var next = [String: Int]()
        var problems = 0
        while expected <= 1_000_010 {
            guard let event = try timmy.next(timeoutMillis: 10_000), case let .record(record) = event else { break }
            if record.relaySequence != expected { problems += 1 }
            let producer = record.producer.string
            if record.payload.string != "\(producer)-\(next[producer, default: 0])" { problems += 1 }
            next[producer, default: 0] += 1
            expected = record.relaySequence + 1
        }
        #expect(expected == 1_000_011 && problems == 0, "caught up through \(expected - 1) with \(problems) problems")
        try timmy.commit(through: timmy.lastSequence)
        try push(relay, ["live-1", "live-2"], producer: "live")
        var live: [String] = []
        while live.count < 2, let event = try timmy.next(timeoutMillis: 10_000) {
            if case let .record(record) = event { live.append(record.payload.string) }
        }
        #expect(live == ["live-1", "live-2"])
        #expect(timmy.lastSequence == 1_000_012)
        try timmy.commit(through: timmy.lastSequence)
        try timmy.waitCommitted(through: timmy.lastSequence)
        timmy.close()
    }

    @Test func killNineWhileFourProducersPush() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let perProducer = 100_000
        let first = try RelayProcess(dataDirectory: data)
        let pushers = try PipedPushers(relay: first, prefix: "k")
        pushers.feed(0 ..< perProducer / 2)
        usleep(500_000)
        first.crash()
        let second = try RelayProcess(listen: first.address, dataDirectory: data)
        pushers.feed(perProducer / 2 ..< perProducer)
        try pushers.finish(perProducer: perProducer)
        #expect(second.log.contains("event=sequences_skipped"), "the numbers the crashed run reserved are skipped")

        let (records, skips) = try tail(second, ["--from", "earliest", "--count", String(4 * perProducer)])
        #expect(records.count == 4 * perProducer)
        #expect(!skips.isEmpty, "the skip is marked for collectors")
        let (next, problems) = TestTraffic.audit(records, skips: skips)
        #expect(problems == 0, "every acked record exactly once, per-producer order kept, sequences increasing and never in a skip")
        #expect(next == ["k1": perProducer, "k2": perProducer, "k3": perProducer, "k4": perProducer])
    }

    @Test func damagedSpillFilesAreSetAsideAndTheRelayStarts() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let small = ["--set", "spill_block_bytes=4096", "--set", "spill_segment_bytes=65536"]
        let count = 6000
        let lines = (0 ..< count).map { "c-\($0)-" + String(UInt64($0) &* 0x9E37_79B9_7F4A_7C15, radix: 16) }
        do {
            let relay = try RelayProcess(small, dataDirectory: data)
            try push(relay, lines, producer: "corrupt")
            #expect(relay.stop() == 0)
        }
        let segments = try SpillFiles.segments(in: data)
        #expect(segments.count >= 3, "several segments to damage")
        guard segments.count >= 3 else { return }
        // 1. Flip bytes inside a middle block of the first segment.
        let firstBlocks = try SpillFiles.blocks(of: segments[0])
        let middle = firstBlocks[firstBlocks.count / 2]
        let handle = try FileHandle(forUpdating: segments[0])
        try handle.seek(toOffset: UInt64(middle.offset + 64 + 20))
        try handle.write(contentsOf: Data([0xDE, 0xAD, 0xBE, 0xEF]))
        try handle.close()
        // 2. Garbage after the last block of the second segment.
        let garbage = try FileHandle(forUpdating: segments[1])
        try garbage.seekToEnd()
        try garbage.write(contentsOf: Data((0 ..< 100).map { UInt8(truncatingIfNeeded: $0 * 37) }))
        try garbage.close()
        // 3. Cut the last block of the last segment short, as a crash mid-write would.
        let lastSegment = segments[segments.count - 1]
        guard let torn = try SpillFiles.blocks(of: lastSegment).last else { return }
        try FileHandle(forUpdating: lastSegment).truncate(atOffset: UInt64(torn.offset + torn.total - 7))

        let relay = try RelayProcess(small, dataDirectory: data)
        #expect(relay.log.contains("event=spill_tail_truncated"))
        // The first segment was sealed and verified when written: start-up compares it with its
        // record (size, header, last block) instead of reading it, so the flipped bytes are found
        // by the replay below, which checks every block it reads.
        #expect(!relay.log.contains("event=spill_block_quarantined"))
        let quarantine = try FileManager.default.contentsOfDirectory(atPath: data.appendingPathComponent("spill/quarantine").path)
        #expect(quarantine.count == 2, "\(quarantine)")

        let lost = Set(middle.firstSequence ..< middle.firstSequence + UInt64(middle.records))
            .union(torn.firstSequence ..< torn.firstSequence + UInt64(torn.records))
        let (records, skips) = try tail(relay, ["--from", "earliest", "--idle-exit-ms", "1500"])
        let expected = (1 ... UInt64(count)).filter { !lost.contains($0) }
        #expect(records.map(\.relaySequence) == expected, "only the damaged blocks' records are missing")
        #expect(records.allSatisfy { $0.payload == lines[Int($0.relaySequence) - 1] })
        #expect(skips.isEmpty, "lost records are not passed off as skipped numbers")
        let deadline = Date().addingTimeInterval(5)
        while !relay.log.contains("event=spill_block_damaged") && Date() < deadline { usleep(50_000) }
        #expect(relay.log.contains("event=spill_block_damaged") && relay.log.contains("lost_records=\(middle.records)"), "\(relay.log)")
        usleep(400_000)
        let events = try StateStore(path: data.appendingPathComponent("state.sqlite").path).events()
        #expect(events.contains { $0.kind == "spill_block_damaged" && $0.records == UInt64(middle.records) }, "\(events)")
        #expect(relay.stop() == 0)

        // Found once: the next run reads past the same block again and counts nothing.
        let again = try RelayProcess(small, dataDirectory: data)
        let (reread, _) = try tail(again, ["--from", "earliest", "--idle-exit-ms", "1500"])
        #expect(reread.map(\.relaySequence) == expected)
        usleep(400_000)
        #expect(!again.log.contains("event=spill_block_damaged"), "\(again.log)")
    }

    @Test func cleanRestartContinuesWithoutAGapAndKeepsCursors() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        do {
            let relay = try RelayProcess(["--durable", "timmy"], dataDirectory: data)
            try push(relay, (0 ..< 100).map { "a-\($0)" }, producer: "restart")
            let first = try tail(relay, ["--collector", "timmy", "--from", "earliest", "--count", "60"])
            #expect(first.records.last?.relaySequence == 60)
            #expect(relay.stop() == 0)
        }
        let relay = try RelayProcess(["--durable", "timmy"], dataDirectory: data)
        try push(relay, (100 ..< 200).map { "a-\($0)" }, producer: "restart-2")
        let resumed = try tail(relay, ["--collector", "timmy", "--from", "committed", "--count", "140"])
        #expect(resumed.records.map(\.relaySequence) == Array(61 ... 200), "no gap, no skip after a clean restart")
        #expect(resumed.skips.isEmpty)
        #expect(resumed.records.map(\.payload) == (60 ..< 200).map { "a-\($0)" })
    }

    @Test func retentionBySizeCountsForcedLosses() async throws {
        // A small ring, so what retention removes from the spill is not still served from memory.
        let relay = try RelayProcess(["--durable", "timmy", "--set", "spill_block_bytes=4096", "--set", "spill_segment_bytes=65536",
                                      "--set", "retention_max_bytes=131072", "--set", "max_frame_bytes=65536",
                                      "--set", "ring_bytes=262144"])
        let count = 20_000
        try push(relay, (0 ..< count).map { "r-\($0)-" + String(repeating: String(UInt64($0) &* 0x9E37_79B9_7F4A_7C15, radix: 16), count: 4) },
                 producer: "big")
        let deadline = Date().addingTimeInterval(10)
        while !relay.log.contains("event=retention_forced_loss") && Date() < deadline { usleep(100_000) }
        #expect(relay.log.contains("event=retention_forced_loss"), "timmy never committed: removing its records is counted")
        usleep(1_200_000)
        let bytes = try SpillFiles.segments(in: relay.dataDirectory).reduce(0) {
            $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0)
        }
        #expect(bytes <= 131_072 + 65_536, "the spill is held near its size limit (\(bytes) bytes)")
        let events = try StateStore(path: relay.dataDirectory.appendingPathComponent("state.sqlite").path).events()
        let forced = events.filter { $0.kind == "retention_forced_loss" }.reduce(0) { $0 + $1.records }
        let (records, _) = try tail(relay, ["--from", "earliest", "--idle-exit-ms", "1000"])
        #expect(records.last?.relaySequence == UInt64(count))
        #expect(UInt64(records.count) + forced >= UInt64(count), "what is gone was counted (\(forced) forced)")
        #expect(records.first.map { $0.relaySequence > 1 } == true)
        // The same count reaches /status and /metrics.
        let status = try await ControlHTTP.get(relay, "/status").json()
        let retention = try #require(status["retention"] as? [String: Any])
        #expect(retention["dropped_records"] as? Int == Int(forced))
        #expect((retention["removed_segments"] as? Int ?? 0) >= 1)
        let metrics = try await ControlHTTP.get(relay, "/metrics").text
        #expect(ControlHTTP.sample(metrics, "allegro_retention_dropped_records_total") == Double(forced))

        // Timmy comes back: he resumes at the oldest record held, and what he missed was already
        // counted, so it is not counted again.
        let (resumed, _) = try tail(relay, ["--collector", "timmy", "--from", "committed", "--idle-exit-ms", "1000"])
        #expect(resumed.last?.relaySequence == UInt64(count))
        let after = try await ControlHTTP.get(relay, "/status").json()
        #expect((after["retention"] as? [String: Any])?["dropped_records"] as? Int == Int(forced), "\(after)")
    }

    @Test func retentionDoesNotCountRecordsADurableCollectorStillGetsFromMemory() async throws {
        // The default ring holds every record: retention removes segments whose records are
        // still in memory, and timmy, coming later, is given all of them from there.
        let relay = try RelayProcess(["--durable", "timmy", "--set", "spill_block_bytes=4096", "--set", "spill_segment_bytes=65536",
                                      "--set", "retention_max_bytes=131072"])
        let count = 20_000
        try push(relay, (0 ..< count).map { "r-\($0)-" + String(repeating: String(UInt64($0) &* 0x9E37_79B9_7F4A_7C15, radix: 16), count: 4) },
                 producer: "big")
        let deadline = Date().addingTimeInterval(10)
        while !relay.log.contains("event=retention_removed") && Date() < deadline { usleep(100_000) }
        #expect(relay.log.contains("event=retention_removed"), "retention removed segments timmy had not committed")
        let (records, _) = try tail(relay, ["--collector", "timmy", "--from", "committed", "--idle-exit-ms", "1000"])
        #expect(records.count == count && records.first?.relaySequence == 1, "timmy got every record, from memory")
        let status = try await ControlHTTP.get(relay, "/status").json()
        #expect((status["retention"] as? [String: Any])?["dropped_records"] as? Int == 0, "\(status)")
        #expect(!relay.log.contains("event=retention_forced_loss"))
    }

    @Test func retentionByAge() throws {
        let relay = try RelayProcess(["--set", "retention_max_age_ms=1000", "--set", "durable_collectors=", "--set", "max_frame_bytes=65536",
                                      "--set", "ring_bytes=262144"])
        try push(relay, (0 ..< 500).map { "old-\($0)" }, producer: "aging")
        usleep(1_500_000)
        // Enough newer records to push the old ones out of the 256 KiB ring too.
        let fresh = (0 ..< 5000).map { "new-\($0)-" + String(repeating: "n", count: 80) }
        try push(relay, fresh, producer: "aging-2")
        let deadline = Date().addingTimeInterval(5)
        while !relay.log.contains("reason=age") && Date() < deadline { usleep(100_000) }
        #expect(relay.log.contains("event=retention_removed") && relay.log.contains("reason=age"))
        let (records, _) = try tail(relay, ["--from", "earliest", "--idle-exit-ms", "500"])
        #expect(!records.contains { $0.payload.hasPrefix("old-") }, "records older than the age limit are gone")
        #expect(records.last?.payload == fresh.last)
    }

    @Test func failingDiskStopsAcksAndRecoversByItself() throws {
        let relay = try RelayProcess(["--set", "max_frame_bytes=65536", "--set", "ring_bytes=1048576"] + TestTraffic.growingSpill)
        try push(relay, (0 ..< 1000).map { "before-\($0)" }, producer: "disk")
        try TestTraffic.freezeSpill(of: relay)

        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let count = 50_000
        let blocked = try AllegroBinary.start(["push", "--relay", relay.address, "--producer", "disk-2"],
                                              stdin: try StreamingTests.lines("during", count, in: scratch))
        usleep(2_000_000)
        #expect(blocked.process.isRunning, "no acks while the spill cannot write")
        #expect(relay.log.contains("event=spill_failed"))
        #expect(relay.isRunning)

        try TestTraffic.thawSpill(of: relay)
        let result = try blocked.wait(timeout: 60)
        #expect(result.status == 0 && result.stderr.contains("acked \(count)"), "\(result.stderr)")
        #expect(relay.log.contains("event=spill_recovered_from_failure"))
        let (records, _) = try tail(relay, ["--from", "earliest", "--count", String(1000 + count)])
        #expect(records.map(\.payload) == (0 ..< 1000).map { "before-\($0)" } + (0 ..< count).map { "during-\($0)" })
    }

    @Test func hermesLikeJSONCompressesAtLeastThreeToOne() throws {
        let relay = try RelayProcess()
        var generator = SeededGenerator(seed: 42)
        let kinds = ["session_start", "model_turn", "tool_call", "tool_result", "token_usage", "session_end"]
        let models = ["hermes-3-llama-3.1-70b", "hermes-3-llama-3.1-405b", "claude-sonnet", "gpt-4o-mini"]
        let tools = ["web_search", "read_file", "terminal", "write_file", "browser_navigate"]
        let words = ["the", "agent", "reads", "file", "result", "search", "returns", "three", "pages", "summary", "done", "error"]
        var lines: [String] = []
        for index in 0 ..< 20_000 {
            let session = String(format: "%08x-%04x", generator.next() % 0xFFFF_FFFF, index / 50)
            let text = (0 ..< 6).map { _ in words[Int(generator.next() % UInt64(words.count))] }.joined(separator: " ")
            lines.append("""
                {"session_id":"\(session)","kind":"\(kinds[index % kinds.count])","model":"\(models[Int(generator.next() % 4)])",\
                "tool":"\(tools[Int(generator.next() % 5)])","tokens_in":\(generator.next() % 4000),"tokens_out":\(generator.next() % 800),\
                "latency_ms":\(generator.next() % 3000),"text":"\(text)","turn":\(index % 50)}
                """)
        }
        try push(relay, lines, producer: "hermes")
        #expect(relay.stop() == 0)
        let blocks = try SpillFiles.segments(in: relay.dataDirectory).flatMap { try SpillFiles.blocks(of: $0) }
        let raw = blocks.reduce(0) { $0 + $1.uncompressed }, packed = blocks.reduce(0) { $0 + $1.total }
        let ratio = Double(raw) / Double(packed)
        print("spill compression of Hermes-like JSON: \(raw) -> \(packed) bytes, \(String(format: "%.2f", ratio)):1")
        #expect(ratio >= 3, "ratio \(ratio)")
    }
}

/// A small deterministic generator (SplitMix64), so test data is the same on every run.
struct SeededGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
