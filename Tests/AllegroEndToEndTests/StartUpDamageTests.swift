import AllegroTestSupport
import Foundation
import Testing

/// The real relay starts whatever the disk did to its data directory (short of making it
/// unwritable), sets the damage aside, and reports in its log, `/status` and `/metrics` exactly
/// how many records it lost.
@Suite(.serialized) struct StartUpDamageTests {
    /// A data directory holding acked records "r-0-HEX" ..., from a relay stopped cleanly: each
    /// carries 2,000 characters of random hex and segments are the smallest allowed (64 KiB, in
    /// 4 KiB blocks), so the spill has many segments.
    func dataDirectory(pushes: Int, perPush: Int) throws -> URL {
        let data = try AllegroBinary.scratchDirectory()
        let relay = try RelayProcess(["--http", "off", "--set", "spill_segment_bytes=65536", "--set", "spill_block_bytes=4096"],
                                     dataDirectory: data)
        for push in 0 ..< pushes {
            try TestTraffic.push(relay, (0 ..< perPush).map { index in
                "r-\(push * perPush + index)-" + (0 ..< 1000).map { _ in String(format: "%02x", UInt8.random(in: 0 ... 255)) }.joined()
            }, producer: "p\(push)")
        }
        #expect(relay.stop() == 0)
        return data
    }

    /// Every payload `allegro tail` gets from the start, reading until the relay is quiet.
    func everything(_ relay: RelayProcess, expecting count: Int) throws -> [String] {
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", String(count),
                                          "--idle-exit-ms", "2000", "--format", "payload"], timeout: 60)
        #expect(tail.status == 0, "\(tail.stderr)")
        return tail.stdout.split(separator: "\n").map(String.init)
    }

    func recovery(_ relay: RelayProcess) async throws -> [String: Any] {
        let status = try await ControlHTTP.get(relay, "/status").json()
        return try #require(status["recovery"] as? [String: Any], "\(status)")
    }

    @Test(arguments: ["garbage at its head", "a damaged page", "a directory"])
    func anUnreadableStateDatabaseIsSetAsideAndRebuiltFromTheSpill(damage: String) async throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let first = try RelayProcess(["--http", "off"], dataDirectory: data)
        try TestTraffic.publish(first, producer: "p0", prefix: "a", count: 50)
        try TestTraffic.publish(first, producer: "p1", prefix: "b", count: 50)
        #expect(first.stop() == 0)
        let expected = (0 ..< 50).map { "a-\($0)" } + (0 ..< 50).map { "b-\($0)" }
        let state = data.appendingPathComponent("state.sqlite")
        switch damage {
        case "garbage at its head":
            let file = try FileHandle(forUpdating: state)
            try file.write(contentsOf: Data(repeating: 0xA5, count: 4096))
            try file.close()
        case "a damaged page":
            let size = try #require(try FileManager.default.attributesOfItem(atPath: state.path)[.size] as? Int)
            #expect(size >= 3 * 4096, "the database has pages past the first: \(size)")
            let file = try FileHandle(forUpdating: state)
            try file.seek(toOffset: 4096)
            try file.write(contentsOf: Data(repeating: 0xFF, count: size - 4096))
            try file.close()
        default:
            try FileManager.default.removeItem(at: state)
            try FileManager.default.createDirectory(at: state, withIntermediateDirectories: false)
        }

        let relay = try RelayProcess(dataDirectory: data)
        #expect(relay.log.contains("event=state_set_aside"), "\(relay.log)")
        let recovered = try await recovery(relay)
        #expect(recovered["state_rebuilt"] as? Bool == true && recovered["lost_records"] as? Int == 0, "\(recovered)")
        #expect(try everything(relay, expecting: 100) == expected)
        let names = try FileManager.default.contentsOfDirectory(atPath: data.path)
        #expect(names.contains { $0.hasPrefix("state.sqlite.bad-") }, "the unreadable database is kept: \(names)")

        // Producers' marks came back from the spill: a resend is dropped as a duplicate.
        try TestTraffic.publish(relay, producer: "p0", prefix: "a", count: 50)
        #expect(try everything(relay, expecting: 101) == expected)
    }

    @Test func aSpillThatIsAFileAndSegmentsThatAreNotFilesDoNotStopTheRelay() async throws {
        let data = try dataDirectory(pushes: 4, perPush: 100)
        defer { try? FileManager.default.removeItem(at: data) }
        let segments = try SpillFiles.segments(in: data)
        #expect(segments.count >= 4, "\(segments)")
        let lostRecords = try SpillFiles.blocks(of: segments[1]).reduce(0) { $0 + $1.records }
            + (try SpillFiles.blocks(of: segments[2]).reduce(0) { $0 + $1.records })
        try FileManager.default.removeItem(at: segments[1])
        try FileManager.default.createDirectory(at: segments[1], withIntermediateDirectories: false)
        try FileManager.default.removeItem(at: segments[2])
        try FileManager.default.createSymbolicLink(at: segments[2], withDestinationURL: URL(fileURLWithPath: "/nonexistent/allegro"))

        let relay = try RelayProcess(dataDirectory: data)
        let recovered = try await recovery(relay)
        #expect(recovered["lost_records"] as? Int == lostRecords && recovered["set_aside"] as? Int == 2, "\(recovered)")
        let metrics = try await ControlHTTP.get(relay, "/metrics")
        #expect(ControlHTTP.sample(metrics.text, "allegro_recovery_lost_records") == Double(lostRecords))
        #expect(relay.log.contains("event=spill_records_lost"), "\(relay.log)")
        #expect(try everything(relay, expecting: 400).count == 400 - lostRecords)
        #expect(relay.stop() == 0)

        // The next start counts nothing again; then spill/ itself becomes a file.
        let again = try RelayProcess(dataDirectory: data)
        #expect(try await recovery(again)["lost_records"] as? Int == 0)
        #expect(again.stop() == 0)
        let spill = data.appendingPathComponent("spill")
        try FileManager.default.removeItem(at: spill)
        #expect(FileManager.default.createFile(atPath: spill.path, contents: Data("x".utf8)))
        let third = try RelayProcess(dataDirectory: data)
        #expect(third.log.contains("event=spill_entry_set_aside"), "\(third.log)")
        try TestTraffic.push(third, ["after"], producer: "later")
        #expect(try everything(third, expecting: 1) == ["after"])
    }

    @Test func aDeletedMiddleSegmentAndATruncatedOneAreCountedExactly() async throws {
        let data = try dataDirectory(pushes: 5, perPush: 100)
        defer { try? FileManager.default.removeItem(at: data) }
        let segments = try SpillFiles.segments(in: data)
        #expect(segments.count >= 5, "\(segments)")
        let deleted = try SpillFiles.blocks(of: segments[1]).reduce(0) { $0 + $1.records }
        try FileManager.default.removeItem(at: segments[1])
        // Sealed segment 3 is cut in the middle of its first block: all its records are gone.
        let blocks = try SpillFiles.blocks(of: segments[3])
        let truncated = blocks.reduce(0) { $0 + $1.records }
        let cut = try #require(blocks.first)
        try FileHandle(forUpdating: segments[3]).truncate(atOffset: UInt64(cut.offset + cut.total / 2))
        #expect(deleted > 0 && truncated > 0)

        let relay = try RelayProcess(dataDirectory: data)
        // Sealed segments recorded by the run that wrote them are not read again, unless changed:
        // all but the deleted, the truncated and the newest.
        #expect(relay.log.contains("segments_not_read=\(segments.count - 3)"), "\(segments.count) segments: \(relay.log)")
        let recovered = try await recovery(relay)
        #expect(recovered["lost_records"] as? Int == deleted + truncated, "\(recovered) \(relay.log)")
        #expect(recovered["unconfirmed_records"] as? Int == 0)
        #expect(try everything(relay, expecting: 500).count == 500 - deleted - truncated)
    }
}
