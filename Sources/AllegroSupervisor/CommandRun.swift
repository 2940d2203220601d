import AllegroLog
import AllegroPosix
import Foundation
import Glibc  // signal numbers only: calls go through AllegroPosix
import Synchronization

/// One run of a command service: its process in a group of its own, its standard output and
/// error read line by line into the supervisor's log under the service's name, and its end.
/// When the process ends, whatever is left of its group (children it started) is killed, so a
/// service leaves no orphans: at once, or, while it is being stopped, once the stop's grace is
/// over (a child that drains, such as a relay under `sh -c`, gets the whole grace). `stop` is
/// SIGTERM to the group (once), then SIGKILL at the grace's end. Every signal is sent while the
/// process's pid is still reserved (`SpawnedProcess.waitForExit`), never to a later process.
///
/// Threads: two output readers (they end at end of file, or soon after the process ended if a
/// stray process kept the pipe open) and one waiter that reaps the process; bounded by the
/// services, at most 64.
final class CommandRun: Sendable {
    let process: SpawnedProcess
    private let exit: Task<SpawnedProcess.Exit, Never>
    private let shared: Shared

    /// The longest line logged; the rest of a longer one is dropped (a service's output is not trusted).
    static let maxLineBytes = 16 << 10

    private init(process: SpawnedProcess, exit: Task<SpawnedProcess.Exit, Never>, shared: Shared) {
        self.process = process
        self.exit = exit
        self.shared = shared
    }

    /// What the waiter, the readers and `stop` share.
    final class Shared: Sendable {
        /// When the stop's grace ends (monotonic nanoseconds), once a stop began.
        let stopDeadline = Mutex<UInt64?>(nil)
        /// Set once the process is reaped: a reader whose pipe a stray process holds stops.
        private let ended = Atomic<Bool>(false)
        func setEnded() { ended.store(true, ordering: .releasing) }
        var isEnded: Bool { ended.load(ordering: .acquiring) }
    }

    /// Starts `arguments` (`executable` is the file run; `arguments[0]` what it is called) and
    /// logs `service_started`. Throws when it cannot be started (no such program, not
    /// executable, a bad directory).
    static func start(service: String, executable: String, arguments: [String], environment: [String], directory: String?,
                      log: EventLog) throws(SystemError) -> CommandRun {
        let output = try PipeEnds()
        let errors = try PipeEnds()
        let input = try File.open("/dev/null", readOnly: true)
        defer { input.close() }
        // On a failure the pipes' ends close as they go out of scope.
        let process = try SpawnedProcess.start(arguments, executable: executable, environment: environment, input: input.descriptor.rawValue,
                                               output: output.write.rawValue, error: errors.write.rawValue, directory: directory)
        // The child holds its own copies; ours would keep the readers from ever seeing the end.
        output.write.close()
        errors.write.close()
        // Logged before the readers start, so the start comes before the service's first line.
        log.log(.info, "service_started", ["service": service, "pid": String(process.pid)])
        let shared = Shared()
        pump(output.read, service: service, stream: "stdout", shared: shared, log: log)
        pump(errors.read, service: service, stream: "stderr", shared: shared, log: log)
        let exit = Task<SpawnedProcess.Exit, Never> {
            let status = await withCheckedContinuation { (continuation: CheckedContinuation<SpawnedProcess.Exit, Never>) in
                let waiter = Thread {
                    continuation.resume(returning: process.waitForExit { process in
                        // Its children go with it; while it is being stopped, at the grace's end.
                        if let end = shared.stopDeadline.withLock({ $0 }) {
                            while Clock.monotonicNanos < end && !process.otherGroupMembers().isEmpty { usleep(50_000) }
                        }
                        process.signalGroup(SIGKILL)
                    })
                    shared.setEnded()
                }
                waiter.name = "allegro-wait"
                waiter.start()
            }
            return status
        }
        return CommandRun(process: process, exit: exit, shared: shared)
    }

    /// The process's end (once reaped).
    func exited() async -> SpawnedProcess.Exit { await exit.value }

    /// SIGTERM to the group (not again if a stop is already under way: a second SIGTERM means
    /// "now" to the relay); SIGKILL once `graceMillis` have passed since the first.
    func stop(graceMillis: Int) async -> SpawnedProcess.Exit {
        let end = shared.stopDeadline.withLock { deadline -> UInt64? in
            if deadline != nil { return nil }
            let end = Clock.monotonicNanos + UInt64(max(graceMillis, 0)) * 1_000_000
            deadline = end
            return end
        }
        if end != nil { process.signalGroup(SIGTERM) }
        let killer = Task {
            let left = (shared.stopDeadline.withLock { $0 } ?? 0) &- Clock.monotonicNanos
            if left < 1 << 62 { try await Task.sleep(for: .nanoseconds(left)) }
            process.signalGroup(SIGKILL)
        }
        let status = await exit.value
        killer.cancel()
        return status
    }

    /// Reads `descriptor` until end of file on a thread of its own, logging each line; after the
    /// process ended, stops at the first second with nothing to read.
    private static func pump(_ descriptor: FileDescriptor, service: String, stream: String, shared: Shared, log: EventLog) {
        let reader = Thread {
            var line: [UInt8] = []
            var skipping = false          // the rest of a line past maxLineBytes
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                if !descriptor.waitReadable(timeoutMillis: 1_000) {
                    if shared.isEnded { break }
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { (try? descriptor.read(into: $0)) ?? 0 }
                guard count > 0 else { break }
                var start = 0
                for index in 0 ..< count where buffer[index] == 0x0A {
                    if skipping {
                        skipping = false     // its first 16 KiB went out already
                    } else {
                        line += buffer[start ..< index]
                        emit(line, service: service, stream: stream, log: log)
                        line.removeAll(keepingCapacity: true)
                    }
                    start = index + 1
                }
                if !skipping && start < count {
                    line += buffer[start ..< count]
                    if line.count > maxLineBytes {
                        emit(line, service: service, stream: stream, log: log)
                        line.removeAll(keepingCapacity: true)
                        skipping = true
                    }
                }
            }
            if !line.isEmpty { emit(line, service: service, stream: stream, log: log) }
            descriptor.close()
        }
        reader.name = "allegro-output"
        reader.start()
    }

    /// One line, cut at `maxLineBytes` (and marked so).
    private static func emit(_ bytes: [UInt8], service: String, stream: String, log: EventLog) {
        var line = String(decoding: bytes.prefix(maxLineBytes), as: UTF8.self) + (bytes.count > maxLineBytes ? " [cut]" : "")
        if line.hasSuffix("\r") { line.removeLast() }
        log.log(stream == "stderr" ? .notice : .info, "service_output", ["service": service, "stream": stream, "line": line])
    }
}
