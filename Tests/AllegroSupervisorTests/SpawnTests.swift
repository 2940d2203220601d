@testable import AllegroPosix
import Foundation
import Testing

/// Programs started in process groups of their own: the group goes together, a program that
/// cannot start says why, and the child gets only the descriptors it was given.
@Suite struct SpawnTests {
    func null() throws -> File { try File.open("/dev/null") }

    @Test func aProgramThatCannotStartIsAnErrorWithItsErrnoAndLeavesNoChild() throws {
        let devnull = try null()
        defer { devnull.close() }
        let raw = devnull.descriptor.rawValue
        #expect(throws: SystemError.self) {
            try SpawnedProcess.start(["/nonexistent/program"], environment: [], input: raw, output: raw, error: raw)
        }
        do {
            _ = try SpawnedProcess.start(["/bin/sh"], environment: [], input: raw, output: raw, error: raw, directory: "/nonexistent")
            Issue.record("a missing directory must be refused")
        } catch {
            #expect(error.errno == ENOENT, "\(error)")
        }
    }

    @Test func theExitStatusAndTheKillingSignalAreTold() throws {
        let devnull = try null()
        defer { devnull.close() }
        let raw = devnull.descriptor.rawValue
        let exits = try SpawnedProcess.start(["/bin/sh", "-c", "exit 7"], environment: [], input: raw, output: raw, error: raw)
        #expect(exits.waitForExit() == .exited(7))
        let sleeper = try SpawnedProcess.start(["/bin/sleep", "30"], environment: [], input: raw, output: raw, error: raw)
        #expect(SpawnedProcess.group(of: sleeper.pid) == sleeper.pid, "a group of its own")
        #expect(sleeper.signalGroup(SIGTERM))
        let exit = sleeper.waitForExit()
        #expect(exit == .signaled(SIGTERM) && exit.status == 128 + SIGTERM)
        #expect(!sleeper.signalGroup(SIGKILL), "a reaped process is never signalled: its pid may be someone else's")
    }

    @Test func aGroupSignalReachesTheChildrenOfTheProgram() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spawn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let pidFile = directory.appendingPathComponent("grandchild").path
        let devnull = try null()
        defer { devnull.close() }
        let raw = devnull.descriptor.rawValue
        let parent = try SpawnedProcess.start(["/bin/sh", "-c", "sleep 30 & echo $! > \(pidFile); wait"], environment: [],
                                              input: raw, output: raw, error: raw)
        var grandchild: Int32?
        for _ in 0 ..< 200 where grandchild == nil {
            grandchild = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if grandchild == nil { usleep(10_000) }
        }
        let child = try #require(grandchild)
        #expect(SpawnedProcess.group(of: child) == parent.pid, "the grandchild is in the program's group")
        parent.signalGroup(SIGKILL)
        _ = parent.waitForExit()
        // The grandchild is not ours to reap (init is): wait until it is gone from /proc or a zombie.
        var gone = false
        for _ in 0 ..< 300 where !gone {
            let state = (try? File.readText("/proc/\(child)/stat")).flatMap { $0.split(separator: ")").last?.split(separator: " ").first }
            gone = state == nil || state == "Z"
            if !gone { usleep(10_000) }
        }
        #expect(gone, "the grandchild died with the group")
    }

    @Test func theChildGetsItsThreeStreamsAndNoOtherDescriptorOfOurs() throws {
        let output = try PipeEnds()
        let kept = try File.open("/dev/null")            // close-on-exec or not, the child must not see it
        defer { kept.close() }
        let devnull = try null()
        defer { devnull.close() }
        let process = try SpawnedProcess.start(["/bin/sh", "-c", "ls /proc/self/fd"], environment: [], input: devnull.descriptor.rawValue,
                                               output: output.write.rawValue, error: devnull.descriptor.rawValue)
        output.write.close()
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { (try? output.read.read(into: $0)) ?? 0 }
            if count <= 0 { break }
            bytes += buffer[..<count]
        }
        #expect(process.waitForExit() == .exited(0))
        let descriptors = String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { Int32($0) }
        // 0, 1, 2, and the one `ls` opens to read /proc/self/fd.
        #expect(descriptors.filter { $0 > 2 }.count <= 1, "\(descriptors)")
        #expect(!descriptors.contains(kept.descriptor.rawValue) || kept.descriptor.rawValue <= 3, "\(descriptors)")
    }
}
