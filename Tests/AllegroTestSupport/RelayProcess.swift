import Foundation

/// A real `allegro relay` on a free loopback port (and its HTTP control port on another) with
/// its own data directory, stopped (SIGTERM, then SIGKILL after a deadline) when released.
public final class RelayProcess {
    public let running: AllegroBinary.Running
    public let address: String
    /// The HTTP control port, HOST:PORT (nil when started with `--http off`).
    public let httpAddress: String?
    public let dataDirectory: URL
    private let ownsData: Bool

    public struct DidNotStart: Error, CustomStringConvertible {
        public var log: String
        public var description: String { "the relay did not start listening: \(log)" }
    }

    /// The relay's own process id: the launcher's child when it runs under one (strace).
    public let pid: Int32

    /// Starts a relay; with `dataDirectory` it reuses (and leaves) that directory, as a restart
    /// would. With a `launcher` (`["/usr/bin/strace", ...]`) the relay runs under that program.
    public init(_ arguments: [String] = [], listen: String = "127.0.0.1:0", environment: [String: String] = [:],
         dataDirectory: URL? = nil, launcher: [String] = []) throws {
        ownsData = dataDirectory == nil
        self.dataDirectory = try dataDirectory ?? AllegroBinary.scratchDirectory()
        let http = arguments.contains("--http") ? [] : ["--http", "127.0.0.1:0"]
        // The relay's own alerts and daily report stay off unless a test asks for them: a test
        // that counts records must not meet a report because it ran across 08:00 UTC.
        let watch = arguments.contains { $0.hasPrefix("alert_interval_ms=") } ? [] : ["--set", "alert_interval_ms=0"]
        running = try AllegroBinary.start(["relay", "--listen", listen, "--data", self.dataDirectory.path] + http + watch + arguments,
                                          environment: environment, launcher: launcher)
        let wantsHTTP = !arguments.contains("off")
        let deadline = Date().addingTimeInterval(20)
        var found: String?, foundHTTP: String?
        while (found == nil || (wantsHTTP && foundHTTP == nil)) && Date() < deadline && running.process.isRunning {
            found = Self.listeningAddress(in: running.stderr)
            foundHTTP = Self.listeningAddress(in: running.stderr, event: "http_listening")
            if found == nil || (wantsHTTP && foundHTTP == nil) { usleep(5000) }
        }
        guard let found, !wantsHTTP || foundHTTP != nil else { throw DidNotStart(log: running.stderr) }
        address = found
        httpAddress = foundHTTP
        let launched = running.process.processIdentifier
        guard !launcher.isEmpty else {
            pid = launched
            return
        }
        // The launcher forked the relay: its one child (listening by now, so exec'd).
        let children = (try? String(contentsOfFile: "/proc/\(launched)/task/\(launched)/children", encoding: .utf8)) ?? ""
        guard let child = children.split(separator: " ").first.flatMap({ Int32($0) }) else {
            throw DidNotStart(log: "no child of the launcher \(launcher[0]): \(running.stderr)")
        }
        pid = child
    }

    deinit {
        stop()
        if ownsData { try? FileManager.default.removeItem(at: dataDirectory) }
    }

    public var log: String { running.stderr }

    /// kill -9, and wait for it to be gone.
    public func crash() {
        kill(pid, SIGKILL)
        running.process.waitUntilExit()
    }
    public var isRunning: Bool { running.process.isRunning }

    /// SIGTERM and wait; SIGKILL if it has not exited in 10 s. Returns the exit status.
    @discardableResult
    public func stop() -> Int32 {
        if running.process.isRunning {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while running.process.isRunning && Date() < deadline { usleep(2000) }
            if running.process.isRunning { kill(pid, SIGKILL) }
            running.process.waitUntilExit()
        }
        return running.process.terminationStatus
    }

    public static func listeningAddress(in log: String, event: String = "listening") -> String? {
        for line in log.split(separator: "\n") where line.contains("event=\(event) ") {
            for field in line.split(separator: " ") where field.hasPrefix("address=") {
                return String(field.dropFirst("address=".count))
            }
        }
        return nil
    }
}
