import CAllegroSys
import Glibc
import Synchronization

/// A program started in a process group of its own (`allegro_spawn` in the C shim: fork, then
/// only async-signal-safe calls until execve). The group is what `signalGroup` signals, so the
/// program's own children go with it. Its pid is its group's id.
///
/// Thread rules: `waitForExit()` blocks and is called once, by one thread (the service's
/// waiter); `signalGroup` may be called from any thread until then. After the exit is reaped
/// the pid may be reused by the kernel, so nothing signals it afterwards: `signalGroup` then
/// does nothing. `Sendable`: its state is the pid (immutable) and one atomic flag.
public final class SpawnedProcess: Sendable {
    public let pid: Int32
    private let reaped = Mutex(false)

    init(pid: Int32) { self.pid = pid }

    /// How a process ended.
    public enum Exit: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case let .exited(code): "exit status \(code)"
            case let .signaled(signal): "killed by signal \(signal)\(signal == SIGKILL ? " (SIGKILL)" : signal == SIGTERM ? " (SIGTERM)" : "")"
            }
        }

        /// The shell's `$?`: the exit status, or 128 + the signal.
        public var status: Int32 {
            switch self {
            case let .exited(code): code
            case let .signaled(signal): 128 + signal
            }
        }
    }

    /// Starts `arguments[0]` (an absolute path) with `arguments` and `environment`; standard
    /// input from `input`, output and error to `output` and `error` (descriptors the caller
    /// keeps and closes). Throws when the program could not be started (chdir, execve).
    /// `executable`, when given, is the file run (`/proc/self/exe`: this very binary, even once
    /// an upgrade replaced its path), `arguments[0]` then only what the program is called.
    public static func start(_ arguments: [String], executable: String? = nil, environment: [String], input: Int32, output: Int32,
                             error: Int32, directory: String? = nil) throws(SystemError) -> SpawnedProcess {
        precondition(!arguments.isEmpty, "a program to start")
        var code: Int32 = 0
        let pid: Int32 = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in
                (executable ?? arguments[0]).withCString { path in
                    guard let directory else { return allegro_spawn(path, argv, envp, input, output, error, nil, &code) }
                    return directory.withCString { allegro_spawn(path, argv, envp, input, output, error, $0, &code) }
                }
            }
        }
        guard pid > 0 else { throw SystemError("start \(executable ?? arguments[0])", errno: code) }
        return SpawnedProcess(pid: pid)
    }

    /// Blocks until the process ends. Then, while its pid is still reserved (ended, not yet
    /// reaped: no later process can have its pid or group id), `beforeReap` runs, to deal with
    /// what is left of its group; then the process is reaped, after which `signalGroup` does
    /// nothing.
    public func waitForExit(beforeReap: (SpawnedProcess) -> Void = { _ in }) -> Exit {
        var code: Int32 = 0
        var signaled: Int32 = 0
        let pid = pid
        let outcome = SystemCall.run(.waitpid) { allegro_wait_ended(pid, &code, &signaled) }
        if outcome.errno == nil { beforeReap(self) }
        reaped.withLock { reaped in
            // Under the lock: no signalGroup runs between the reap and the flag.
            var status: Int32 = 0
            _ = SystemCall.run(.waitpid) { waitpid(pid, &status, 0) }
            reaped = true
        }
        // ECHILD: not ours to wait for (cannot happen to a child only we reap); reported as lost.
        guard outcome.errno == nil else { return .signaled(0) }
        return signaled != 0 ? .signaled(code) : .exited(code)
    }

    /// Sends `signal` to the whole process group, unless the process is already reaped.
    /// Returns false when the group is gone (ESRCH) or the process was reaped.
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        reaped.withLock { reaped in
            // Under the lock: the process cannot be reaped (and its pid freed) in between.
            guard !reaped else { return false }
            return SystemCall.run(.kill) { kill(-pid, signal) }.errno == nil
        }
    }

    /// The processes of this process's group other than itself (from /proc), for a caller that
    /// waits for them to end; empty once they have (or were never there).
    public func otherGroupMembers() -> [Int32] {
        guard let entries = try? Directory.entries("/proc") else { return [] }
        var members: [Int32] = []
        for entry in entries {
            guard let other = Int32(entry), other != pid, let text = try? File.readText("/proc/\(other)/stat", limitBytes: 4096),
                  let close = text.lastIndex(of: ")") else { continue }
            // After ')': the state, the parent, then the process group (field 5).
            let fields = text[text.index(after: close)...].split(separator: " ")
            if fields.count > 2, fields[0] != "Z", Int32(fields[2]) == pid { members.append(other) }
        }
        return members
    }

    /// Sends `signal` to a process group known only by its id (a group left by an earlier run).
    @discardableResult
    public static func signalGroup(_ group: Int32, _ signal: Int32) -> Bool {
        guard group > 1 else { return false }
        return SystemCall.run(.kill) { kill(-group, signal) }.errno == nil
    }

    /// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat),
    /// which tells a process from a later one that reuses its pid; nil when there is none, or
    /// when it has ended and only waits to be reaped (a zombie).
    public static func startTicks(of pid: Int32) -> UInt64? {
        guard let text = try? File.readText("/proc/\(pid)/stat") else { return nil }
        // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After ')': the state (field 3) is fields[0]; field 22 is fields[19].
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else { return nil }
        return UInt64(fields[19])
    }

    /// The process group of `pid`, nil when there is no such process.
    public static func group(of pid: Int32) -> Int32? {
        let group = getpgid(pid)
        return group < 0 ? nil : group
    }
}

/// A pipe's two ends, each close-on-exec (the child gets its end by dup2 only); each is closed
/// when its owner lets it go, if not before.
public struct PipeEnds: Sendable {
    public let read: FileDescriptor
    public let write: FileDescriptor

    public init() throws(SystemError) {
        var ends: [Int32] = [-1, -1]
        _ = try SystemCall.run(.pipe2) { pipe2(&ends, O_CLOEXEC) }.get("pipe2")
        read = FileDescriptor(owning: ends[0])
        write = FileDescriptor(owning: ends[1])
    }
}

/// Runs `body` with a NULL-terminated C array of the strings, valid for the call only.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
    for (index, string) in strings.enumerated() { pointers[index] = strdup(string) }
    pointers[strings.count] = nil
    defer {
        for index in 0 ..< strings.count { free(pointers[index]) }
        pointers.deallocate()
    }
    return body(pointers)
}
