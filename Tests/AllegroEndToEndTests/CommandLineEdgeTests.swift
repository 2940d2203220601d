import AllegroTestSupport
import Foundation
import Testing

/// The command line's rough edges, on the real binary: a tail that outlives a relay restart, a
/// tail whose reader leaves, flag errors in one line, input that is not plain LF text, help that
/// is wrapped once, and a control port that says why a query is wrong.
@Suite struct CommandLineEdgeTests {
    /// Waits until `running`'s standard output has `lines` lines (or `seconds` pass).
    private func waitForLines(_ running: AllegroBinary.Running, _ lines: Int, seconds: Double = 20) -> [TailLine?] {
        let deadline = Date().addingTimeInterval(seconds)
        var parsed: [TailLine?] = []
        repeat {
            parsed = TailLine.parse((try? Data(contentsOf: running.outURL)) ?? Data())
            if parsed.count >= lines { break }
            usleep(20_000)
        } while Date() < deadline
        return parsed
    }

    private func input(_ bytes: [UInt8]) throws -> URL {
        let url = try AllegroBinary.scratchDirectory().appendingPathComponent("input")
        try Data(bytes).write(to: url)
        return url
    }

    @Test func aTailOutlivesARelayRestartSayingSoAndResumesWithNoGapOrDuplicate() throws {
        let data = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let first = try RelayProcess(["--http", "off"], dataDirectory: data)
        try TestTraffic.push(first, ["a", "b", "c"], producer: "before")
        let tail = try AllegroBinary.start(["tail", "--relay", first.address, "--from", "earliest", "--count", "6"])
        #expect(waitForLines(tail, 3).count == 3, "\(tail.stderr)")
        #expect(first.stop() == 0)
        let second = try RelayProcess(["--http", "off"], listen: first.address, dataDirectory: data)
        try TestTraffic.push(second, ["d", "e", "f"], producer: "after")
        let result = try tail.wait(timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = TailLine.parse(result.stdoutData)
        #expect(lines.map { $0?.payload } == ["a", "b", "c", "d", "e", "f"], "\(result.stdout)")
        #expect(lines.map { $0?.relaySequence ?? 0 } == lines.map { $0?.relaySequence ?? 0 }.sorted())
        #expect(Set(lines.map { $0?.relaySequence ?? 0 }).count == 6, "no number twice")
        // A stopping relay says SHUTTING_DOWN; tail passes that on, with how long it keeps trying.
        #expect(result.stderr.contains("allegro tail: the relay refused: SHUTTING_DOWN"), "says why: \(result.stderr)")
        #expect(result.stderr.contains("retrying for 30 s (--connect-timeout)"), "and how long it tries: \(result.stderr)")
        #expect(result.stderr.contains("allegro tail: connected to \(first.address)"), "\(result.stderr)")
    }

    @Test func aTailWithNoReconnectEndsWithTheReasonWhenTheRelayGoes() throws {
        let relay = try RelayProcess(["--http", "off"])
        let tail = try AllegroBinary.start(["tail", "--relay", relay.address, "--no-reconnect"])
        usleep(300_000)
        relay.stop()
        let result = try tail.wait(timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("allegro tail: "), "\(result.stderr)")
        #expect(!result.stderr.contains("retrying"), "\(result.stderr)")
    }

    /// Runs `tail --from earliest` (no --count) into a pipe whose reader leaves, at once or after
    /// the first bytes; returns tail's exit status and what it said on standard error.
    private func tailIntoAPipe(_ relay: RelayProcess, readFirst: Bool) throws -> (Int32, String) {
        let pipe = Pipe(), errors = Pipe()
        let process = Process()
        process.executableURL = AllegroBinary.url
        process.arguments = ["tail", "--relay", relay.address, "--from", "earliest"]
        process.standardOutput = pipe
        process.standardError = errors
        try process.run()
        try pipe.fileHandleForWriting.close()
        if readFirst { _ = pipe.fileHandleForReading.availableData }
        try pipe.fileHandleForReading.close()
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    @Test func aTailWhoseReaderLeavesEndsQuietlyEvenWithNothingMoreToWrite() throws {
        let relay = try RelayProcess(["--http", "off"])
        try TestTraffic.push(relay, (1 ... 20).map { "line \($0)" }, producer: "p")
        // The reader is gone before the first write: that write meets EPIPE.
        let (status, said) = try tailIntoAPipe(relay, readFirst: false)
        #expect(status == 0)
        #expect(said.isEmpty, "nothing about a broken pipe: \(said)")
        // The reader leaves after the records, and no more come: tail notices all the same.
        let (statusAfter, saidAfter) = try tailIntoAPipe(relay, readFirst: true)
        #expect(statusAfter == 0)
        #expect(saidAfter.isEmpty, "\(saidAfter)")
    }

    @Test func aBadFromSaysTheAllowedValuesInOneLine() throws {
        let result = try AllegroBinary.run(["tail", "--from", "yesterday"], timeout: 20)
        #expect(result.status == 64)
        #expect(result.stderr.contains("--from must be earliest, latest, committed or a relay sequence (1 or more), not yesterday"))
        #expect(!result.stderr.contains("USAGE") && !result.stderr.contains("Usage"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test func crlfTextLosesItsCarriageReturnsAndEmptyLinesAreCountedOrSkipped() throws {
        let relay = try RelayProcess(["--http", "off"])
        let text = try input(Array("one\r\ntwo\r\n\r\nthree\n".utf8))
        let pushed = try AllegroBinary.run(["push", "--relay", relay.address], stdin: text, timeout: 30)
        #expect(pushed.status == 0)
        #expect(pushed.stderr == "allegro push: sent 4 records (1 empty), acked 4\n", "\(pushed.stderr)")
        let skipped = try AllegroBinary.run(["push", "--relay", relay.address, "--skip-empty"], stdin: text, timeout: 30)
        #expect(skipped.stderr == "allegro push: sent 3 records, acked 3\n", "\(skipped.stderr)")
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", "7",
                                          "--format", "payload"], timeout: 30)
        #expect(tail.stdout == "one\ntwo\n\nthree\none\ntwo\nthree\n", "\(tail.stdout.debugDescription)")
    }

    @Test func binaryInputGoesAsLengthPrefixedRecordsOrWhole() throws {
        let relay = try RelayProcess(["--http", "off"])
        // Two records holding LF, CR and bytes that are not UTF-8 (so tail shows them in hex).
        let records: [[UInt8]] = [[0x0A, 0xFF, 0x0D, 0x0A], [0xC0, 0x01]]
        let framed: [UInt8] = records.flatMap { (record: [UInt8]) -> [UInt8] in [UInt8(record.count), 0, 0, 0] + record }
        let pushed = try AllegroBinary.run(["push", "--relay", relay.address, "--input", "length-prefixed"],
                                           stdin: try input(framed), timeout: 30)
        #expect(pushed.stderr == "allegro push: sent 2 records, acked 2\n", "\(pushed.stderr)")
        let whole = try AllegroBinary.run(["push", "--relay", relay.address, "--input", "whole"],
                                          stdin: try input(framed), timeout: 30)
        #expect(whole.stderr == "allegro push: sent 1 record, acked 1\n", "\(whole.stderr)")
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", "3"], timeout: 30)
        let lines = tail.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { $0.contains(#""content_type":"application/octet-stream""#) }, "\(tail.stdout)")
        #expect(lines.first?.contains(#""payload_hex":"0aff0d0a""#) == true, "\(tail.stdout)")
        #expect(lines.dropFirst().first?.contains(#""payload_hex":"c001""#) == true, "\(tail.stdout)")
        let wholeHex = framed.map { byte in String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16) }.joined()
        #expect(lines.last?.contains(#""payload_hex":"\#(wholeHex)""#) == true, "\(tail.stdout)")
    }

    @Test func lengthPrefixedInputThatEndsInsideARecordSaysWhere() throws {
        let relay = try RelayProcess(["--http", "off"])
        let truncated: [UInt8] = [2, 0, 0, 0, 0x41, 0x42, 9, 0, 0, 0, 0x43]
        let result = try AllegroBinary.run(["push", "--relay", relay.address, "--input", "length-prefixed"],
                                           stdin: try input(truncated), timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.contains("standard input ends inside record 2 (1 of its declared bytes present)"), "\(result.stderr)")
        #expect(result.stderr.contains("before it, 1 record sent, 1 acked"), "\(result.stderr)")
    }

    @Test func helpIsWrappedOnceSoEveryLineIsFilled() throws {
        for command in ["relay", "push", "tail", "config check", "protocol decode"] {
            let result = try AllegroBinary.run(["help"] + command.split(separator: " ").map(String.init), timeout: 20)
            #expect(result.status == 0)
            // The discussion: between the overview and the usage.
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                .drop { !$0.hasPrefix("OVERVIEW:") }.dropFirst().prefix { !$0.hasPrefix("USAGE:") }
            #expect(lines.filter { !$0.isEmpty }.count >= 2, "\(command) has a discussion: \(result.stdout)")
            // A line is filled when the next line's first word would not have fit after it (79
            // columns when not on a terminal); a line broken by hand and then wrapped again is not.
            for (line, next) in zip(lines, lines.dropFirst()) where !line.isEmpty && !next.isEmpty {
                let word = next.prefix { $0 != " " }
                #expect(line.count + 1 + word.count > 79, "\(command): \(line.debugDescription) then \(next.debugDescription)")
            }
        }
    }

    @Test func aSessionsLimitThatIsNotANumberIsABadRequestWithTheReason() async throws {
        let relay = try RelayProcess()
        let answer = try await ControlHTTP.get(relay, "/sessions?limit=abc")
        #expect(answer.status == 400)
        #expect(answer.text.contains("limit must be a whole number from 1 to 10000, not abc"), "\(answer.text)")
        #expect(try await ControlHTTP.get(relay, "/sessions?limit=5").status == 200)
    }
}
