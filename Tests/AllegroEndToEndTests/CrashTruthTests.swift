import AllegroTestSupport
import AllegroClient
import AllegroPosix
import Foundation
import Testing

/// What a collector sees after crashes (kill -9 of the real binary): the stream stays a stream.
@Suite(.serialized) struct CrashTruthTests {
    /// Reads a collector until `records` records have come (or `silenceMillis` pass with none);
    /// returns each record's sequence and payload, and the skips. The client itself checks that
    /// sequences and SKIPs only go forward.
    func read(_ collector: Collector, records: Int, silenceMillis: Int = 10_000)
        throws -> (records: [(UInt64, String)], skips: [ClosedRange<UInt64>]) {
        var found: [(UInt64, String)] = [], skips: [ClosedRange<UInt64>] = []
        while found.count < records, let event = try collector.next(timeoutMillis: silenceMillis) {
            switch event {
            case let .record(record): found.append((record.relaySequence, record.payload.string))
            case let .skip(first, last): skips.append(first ... last)
            }
        }
        return (found, skips)
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

        do { try readTwiceFromCommitted(third) } catch {
            let saved = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-crash-truth-\(UUID().uuidString).log")
            try? third.log.write(to: saved, atomically: false, encoding: .utf8)
            Issue.record("\(error); the relay's log is in \(saved.path): \(third.log.prefix(3000))")
        }
    }

    /// Timmy, durable, reads half, commits, and resumes twice from his committed cursor.
    func readTwiceFromCommitted(_ third: RelayProcess) throws {
        var options = CollectorOptions(relays: [try SocketAddress(parsing: third.address)])
        options.name = "timmy"
        options.start = .earliest
        let timmy = try Collector(options)
        let early = try read(timmy, records: 6)
        #expect(early.records.map(\.0) == Array(1 ... 6))
        try timmy.commit(through: 6)
        timmy.close()
        for round in 1 ... 2 {
            options.start = .committed
            let again = try Collector(options)
            let rest = try read(again, records: 6)
            let sequences = rest.records.map(\.0)
            #expect(sequences.prefix(4) == [7, 8, 9, 10], "round \(round): \(sequences)")
            #expect(sequences.count == 6, "round \(round): the two records after the crashes arrive")
            #expect(rest.skips.count >= 1, "round \(round): the crashed runs' numbers are marked skipped")
            // Skips and records only go forward: nothing overlaps, nothing repeats.
            var events = rest.skips.map { ($0.lowerBound, $0.upperBound) } + sequences.map { ($0, $0) }
            events.sort { $0.0 < $1.0 }
            for (earlier, later) in zip(events, events.dropFirst()) {
                #expect(later.0 > earlier.1, "round \(round): \(earlier) then \(later)")
            }
            if let lastSkip = rest.skips.last, let lastRecord = sequences.last {
                #expect(lastSkip.upperBound < lastRecord)
            }
            again.close()
        }
    }

    func payloads(_ collector: Collector, limit: Int, silenceMillis: Int) throws -> [(UInt64, String)] {
        try read(collector, records: limit, silenceMillis: silenceMillis).records
    }

    @Test func aCollectorIsNeverGivenARecordThatACrashMakesTheRelayForget() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let first = try RelayProcess(["--durable", "timmy"] + TestTraffic.growingSpill, dataDirectory: data)
        let address = try SocketAddress(parsing: first.address)
        try TestTraffic.push(first, (1 ... 5).map { "warm-\($0)" }, producer: "warm")
        var timmyOptions = CollectorOptions(relays: [address])
        timmyOptions.name = "timmy"
        timmyOptions.start = .earliest
        let timmy = try Collector(timmyOptions)
        #expect(try payloads(timmy, limit: 5, silenceMillis: 5_000).map(\.1) == (1 ... 5).map { "warm-\($0)" })
        try timmy.commit(through: 5)
        try timmy.waitCommitted(through: 5)

        // The disk stops taking writes: new records are accepted into memory, never fsync'd.
        try TestTraffic.freezeSpill(of: first)
        var tailOptions = CollectorOptions(relays: [address])
        tailOptions.start = .sequence(6)
        let tail = try Collector(tailOptions)
        tailOptions.live = true
        let live = try Collector(tailOptions)
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let pusher = try AllegroBinary.start(["push", "--relay", first.address, "--producer", "late"],
                                             stdin: try StreamingTests.lines("late", 20, in: scratch))
        let seenLive = try payloads(live, limit: 20, silenceMillis: 5_000)
        #expect(seenLive.map(\.1) == (0 ..< 20).map { "late-\($0)" }, "a live tail sees records before the fsync")
        #expect(try payloads(timmy, limit: 1, silenceMillis: 1_000).isEmpty, "timmy is given nothing that is not fsync'd")
        #expect(try payloads(tail, limit: 1, silenceMillis: 200).isEmpty, "nor is an ephemeral tail by default")

        // kill -9: the late records were never durable. Their producer resends them to the next run.
        first.crash()
        let second = try RelayProcess(["--durable", "timmy"], listen: first.address, dataDirectory: data)
        let pushed = try pusher.wait(timeout: 60)
        #expect(pushed.status == 0 && pushed.stderr.contains("acked 20"), "\(pushed.stderr)")
        timmyOptions.start = .committed
        let again = try Collector(timmyOptions)
        let resumed = try payloads(again, limit: 20, silenceMillis: 5_000)
        #expect(resumed.map(\.1) == (0 ..< 20).map { "late-\($0)" }, "each late record once, in order: \(resumed)")
        #expect(resumed.allSatisfy { record in !seenLive.contains { $0.0 == record.0 } },
                "the resent records have new numbers, above those the crash took back")
        _ = second
    }

    @Test func aCommitTheRelayConfirmedSurvivesAKillRightAfterIt() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        var relay = try RelayProcess(["--durable", "timmy", "--http", "off"], dataDirectory: data)
        try TestTraffic.push(relay, (1 ... 50).map { "c-\($0)" }, producer: "c")
        var confirmed: UInt64 = 0
        for round in 1 ... 5 {
            var options = CollectorOptions(relays: [try SocketAddress(parsing: relay.address)])
            options.name = "timmy"
            options.start = .committed
            let timmy = try Collector(options)
            #expect(timmy.subscription.firstSequence == confirmed + 1, "round \(round) resumes just after the confirmed commit")
            var last: UInt64 = 0
            while last < confirmed + 10, let event = try timmy.next(timeoutMillis: 5_000) {
                if case let .record(record) = event { last = record.relaySequence }
            }
            try timmy.commit(through: last)
            try timmy.waitCommitted(through: last)
            confirmed = last
            // kill -9 the moment COMMITTED arrived.
            relay.crash()
            relay = try RelayProcess(["--durable", "timmy", "--http", "off"], dataDirectory: data)
        }
        #expect(confirmed == 50)
    }

    @Test func aResendAfterADamagedTailIsStoredAgainNotDroppedAsADuplicate() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let first = try RelayProcess(["--http", "off"], dataDirectory: data)
        try TestTraffic.publish(first, producer: "early", prefix: "early", count: 10)
        usleep(100_000)
        try TestTraffic.publish(first, producer: "cp2", prefix: "cp2", count: 4)
        // Long enough for the producer marks (cp2 through 4) to be saved with their checkpoint.
        usleep(600_000)
        first.crash()

        // The last block, cp2's four records, is torn by the disk.
        let segment = try #require(try SpillFiles.segments(in: data).last)
        let last = try #require(try SpillFiles.blocks(of: segment).last)
        #expect(last.firstSequence == 11 && last.records == 4, "cp2's records are a block of their own: \(last)")
        try FileHandle(forUpdating: segment).truncate(atOffset: UInt64(last.offset + last.total - 7))

        // cp2 resends the same records (same producer sequences): they are stored and acked again.
        let second = try RelayProcess(["--http", "off"], listen: first.address, dataDirectory: data)
        #expect(second.log.contains("event=producer_marks_rebuilt"))
        try TestTraffic.publish(second, producer: "cp2", prefix: "cp2", count: 4)
        let tail = try AllegroBinary.run(["tail", "--relay", second.address, "--from", "earliest", "--count", "14",
                                          "--idle-exit-ms", "3000", "--format", "payload"], timeout: 60)
        let payloads = tail.stdout.split(separator: "\n").map(String.init)
        #expect(payloads == (0 ..< 10).map { "early-\($0)" } + (0 ..< 4).map { "cp2-\($0)" }, "\(payloads)")
    }

    @Test func collectorsThatLeaveInTheMiddleOfACatchUpFromTheSpillDoNotBringTheRelayDown() throws {
        // A small ring: the backlog is served from the spill, chunk by chunk.
        let relay = try RelayProcess(["--http", "off", "--set", "max_frame_bytes=65536", "--set", "ring_bytes=1048576"])
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let pushed = try AllegroBinary.run(["push", "--relay", relay.address, "--producer", "backlog"],
                                           stdin: try StreamingTests.lines("backlog", 60_000, in: scratch), timeout: 120)
        #expect(pushed.status == 0, "\(pushed.stderr)")
        for _ in 0 ..< 20 {
            var options = CollectorOptions(relays: [try SocketAddress(parsing: relay.address)])
            options.start = .earliest
            options.window = 8
            let leaving = try Collector(options)
            _ = try payloads(leaving, limit: 3, silenceMillis: 5_000)
            leaving.close()
        }
        usleep(1_500_000)
        #expect(relay.isRunning, "the relay survived: \(relay.log.prefix(2000))")
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", "60000",
                                          "--format", "payload"], timeout: 120)
        #expect(tail.status == 0 && tail.stdout.split(separator: "\n").count == 60_000, "\(tail.stderr)")
    }

    /// Threads of a running process (Linux `/proc/PID/status`).
    func threads(of pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("Threads:") } ?? ""
        return Int(line.split(separator: "\t").last.map(String.init) ?? "") ?? -1
    }

    @Test func twentyCollectorsCatchingUpAtOnceShareABoundedPoolOfReplayThreads() throws {
        let relay = try RelayProcess(["--http", "off", "--set", "max_frame_bytes=65536", "--set", "ring_bytes=1048576",
                                      "--set", "replay_threads=2"])
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let pushed = try AllegroBinary.run(["push", "--relay", relay.address, "--producer", "backlog"],
                                           stdin: try StreamingTests.lines("backlog", 60_000, in: scratch), timeout: 120)
        #expect(pushed.status == 0, "\(pushed.stderr)")
        let before = threads(of: relay.pid)
        var collectors: [Collector] = []
        for _ in 0 ..< 20 {
            var options = CollectorOptions(relays: [try SocketAddress(parsing: relay.address)])
            options.start = .earliest
            options.window = 64
            collectors.append(try Collector(options))
        }
        // Every one is mid catch-up (a few records each), then each reads to the end.
        for collector in collectors { #expect(try payloads(collector, limit: 100, silenceMillis: 5_000).count == 100) }
        let during = threads(of: relay.pid)
        // libdispatch may add a worker or two for SQLite meanwhile; a thread per collector adds 20.
        #expect(before > 0 && during < before + 10, "no thread per collector: \(before) before, \(during) during")
        for collector in collectors {
            #expect(try payloads(collector, limit: 59_900, silenceMillis: 10_000).count == 59_900)
        }
    }
}
