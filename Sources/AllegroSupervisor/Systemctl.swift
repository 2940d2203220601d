import AllegroPosix
import Foundation

/// systemd's view of a unit, from `systemctl show -p ActiveState,SubState,Result,NRestarts,ExecMainStatus`.
public struct UnitState: Sendable, Equatable {
    public var activeState = ""
    public var subState = ""
    public var result = ""
    public var restarts = 0
    public var execMainStatus = 0

    /// `systemctl show`'s KEY=VALUE lines; unknown keys are ignored (systemd adds properties).
    public init(show text: String) {
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let value = String(line[line.index(after: equals)...])
            switch line[..<equals] {
            case "ActiveState": activeState = value
            case "SubState": subState = value
            case "Result": result = value
            case "NRestarts": restarts = Int(value) ?? 0
            case "ExecMainStatus": execMainStatus = Int(value) ?? 0
            default: continue
            }
        }
    }

    public init() {}

    /// Down for good until someone starts it: failed, or inactive (stopped, or systemd gave up).
    public var isDown: Bool { activeState == "failed" || activeState == "inactive" }
    /// Running, or on its way (activating, reloading): not the supervisor's to touch.
    public var isUp: Bool { activeState == "active" || activeState == "reloading" }
}

/// The `systemctl` the supervisor drives: found on PATH, run with a timeout, its output read.
/// It only ever reads a unit's state and restarts a unit; it never edits one.
struct Systemctl: Sendable {
    /// `show` answers at once; `restart` waits for the unit's start, which systemd itself
    /// limits (TimeoutStartSec, 90 s by default): a little longer than that.
    static let showTimeoutMillis = 15_000
    static let restartTimeoutMillis = 100_000

    func show(_ unit: String) async throws(SupervisorError) -> UnitState {
        let output = try await run(["show", "-p", "ActiveState,SubState,Result,NRestarts,ExecMainStatus", "--", unit],
                                   timeoutMillis: Self.showTimeoutMillis)
        return UnitState(show: output)
    }

    func restart(_ unit: String) async throws(SupervisorError) {
        _ = try await run(["restart", "--", unit], timeoutMillis: Self.restartTimeoutMillis)
    }

    /// Runs `systemctl ARGS`; its output (at most 64 KiB) when it exits 0.
    private func run(_ arguments: [String], timeoutMillis: Int) async throws(SupervisorError) -> String {
        guard let program = Executable.resolve("systemctl") else { throw SupervisorError("systemctl is not on PATH") }
        do {
            let output = try PipeEnds()
            let null = try File.open("/dev/null")
            defer { null.close() }
            let process = try SpawnedProcess.start([program.argument0] + arguments, executable: program.executable,
                                                   environment: Executable.environment(["SYSTEMD_PAGER": "", "LC_ALL": "C"]),
                                                   input: null.descriptor.rawValue, output: output.write.rawValue,
                                                   error: null.descriptor.rawValue)
            output.write.close()
            let killer = Task {
                try await Task.sleep(for: .milliseconds(timeoutMillis))
                process.signalGroup(SIGKILL)
            }
            defer { killer.cancel() }
            let (text, exit) = await withCheckedContinuation { (continuation: CheckedContinuation<(String, SpawnedProcess.Exit), Never>) in
                let reader = Thread {
                    var bytes: [UInt8] = []
                    var buffer = [UInt8](repeating: 0, count: 8192)
                    while bytes.count < 64 << 10 {
                        let count = buffer.withUnsafeMutableBytes { (try? output.read.read(into: $0)) ?? 0 }
                        if count <= 0 { break }
                        bytes += buffer[..<count]
                    }
                    output.read.close()
                    continuation.resume(returning: (String(decoding: bytes, as: UTF8.self), process.waitForExit { $0.signalGroup(SIGKILL) }))
                }
                reader.name = "allegro-systemctl"
                reader.start()
            }
            guard exit == .exited(0) else {
                throw SupervisorError("systemctl \(arguments.joined(separator: " ")) ended with \(exit)")
            }
            return text
        } catch let error as SupervisorError {
            throw error
        } catch {
            throw SupervisorError("systemctl \(arguments.joined(separator: " ")): \(error)")
        }
    }
}

/// Something the supervisor could not do, said in a sentence.
public struct SupervisorError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
