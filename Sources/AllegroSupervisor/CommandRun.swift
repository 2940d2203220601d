import AllegroLog
import AllegroPosix
import Foundation
import Glibc  // signal numbers only: calls go through AllegroPosix

/// One run of a command service: its process in a group of its own, its standard output and
/// error read line by line into the supervisor's log under the service's name, and its end.
/// When the process ends, whatever is left of its group (children it started) is killed, so a
/// service leaves no orphans. `stop` is SIGTERM to the group, `graceMillis`, then SIGKILL.
///
/// Threads: two output readers (they end at end of file, when the last writer in the group is
/// gone) and one waiter that reaps the process; bounded by the services, at most 64.
final class CommandRun: Sendable {
    let process: SpawnedProcess
    private let exit: Task<SpawnedProcess.Exit, Never>

    /// The longest line logged; longer ones are cut (a service's output is not trusted).
    static let maxLineBytes = 16 << 10

    private init(process: SpawnedProcess, exit: Task<SpawnedProcess.Exit, Never>) {
        self.process = process
        self.exit = exit
    }

    /// Starts `arguments` (the program resolved already: an absolute path). Throws when it
    /// cannot be started (no such program, not executable, a bad directory).
    static func start(service: String, arguments: [String], environment: [String], directory: String?, log: EventLog) throws(SystemError) -> CommandRun {
        let output = try PipeEnds()
        let errors = try PipeEnds()
        let input = try File.open("/dev/null", readOnly: true)
        defer { input.close() }
        // On a failure the pipes' ends close as they go out of scope.
        let process = try SpawnedProcess.start(arguments, environment: environment, input: input.descriptor.rawValue,
                                               output: output.write.rawValue, error: errors.write.rawValue, directory: directory)
        // The child holds its own copies; ours would keep the readers from ever seeing the end.
        output.write.close()
        errors.write.close()
        pump(output.read, service: service, stream: "stdout", log: log)
        pump(errors.read, service: service, stream: "stderr", log: log)
        let exit = Task<SpawnedProcess.Exit, Never> {
            let status = await withCheckedContinuation { (continuation: CheckedContinuation<SpawnedProcess.Exit, Never>) in
                let waiter = Thread { continuation.resume(returning: process.waitForExit()) }
                waiter.name = "allegro-wait"
                waiter.start()
            }
            // Its children go with it.
            SpawnedProcess.signalGroup(process.pid, SIGKILL)
            return status
        }
        return CommandRun(process: process, exit: exit)
    }

    /// The process's end (once reaped).
    func exited() async -> SpawnedProcess.Exit { await exit.value }

    /// SIGTERM to the group; SIGKILL after `graceMillis` if the process has not ended.
    func stop(graceMillis: Int) async -> SpawnedProcess.Exit {
        process.signalGroup(SIGTERM)
        let killer = Task {
            try await Task.sleep(for: .milliseconds(graceMillis))
            process.signalGroup(SIGKILL)
        }
        let status = await exit.value
        killer.cancel()
        return status
    }

    /// Reads `descriptor` until end of file on a thread of its own, logging each line.
    private static func pump(_ descriptor: FileDescriptor, service: String, stream: String, log: EventLog) {
        let reader = Thread {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let count = buffer.withUnsafeMutableBytes { (try? descriptor.read(into: $0)) ?? 0 }
                guard count > 0 else { break }
                pending += buffer[..<count]
                while let newline = pending.firstIndex(of: 0x0A) {
                    emit(pending[..<newline], service: service, stream: stream, log: log)
                    pending.removeSubrange(...newline)
                }
                if pending.count > maxLineBytes {
                    emit(pending[..<maxLineBytes], service: service, stream: stream, log: log)
                    pending.removeAll()
                }
            }
            if !pending.isEmpty { emit(pending[...], service: service, stream: stream, log: log) }
            descriptor.close()
        }
        reader.name = "allegro-output"
        reader.start()
    }

    private static func emit(_ bytes: ArraySlice<UInt8>, service: String, stream: String, log: EventLog) {
        var line = String(decoding: bytes.prefix(maxLineBytes), as: UTF8.self)
        if line.hasSuffix("\r") { line.removeLast() }
        log.log(stream == "stderr" ? .notice : .info, "service_output", ["service": service, "stream": stream, "line": line])
    }
}
