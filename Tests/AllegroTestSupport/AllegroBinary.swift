import Foundation

/// Runs the real `allegro` binary (the release build when `ALLEGRO_BIN` names it), with a
/// deadline on every wait. Output goes to files, so a chatty child never blocks on a full pipe.
public enum AllegroBinary {
    public struct Result {
        public var status: Int32
        public var stdoutData: Data
        public var stderr: String
        public var stdout: String { String(decoding: stdoutData, as: UTF8.self) }
    }

    public struct TimedOut: Error, CustomStringConvertible {
        public var arguments: [String]
        public var description: String { "allegro \(arguments.joined(separator: " ")) did not exit in time" }
    }

    /// `ALLEGRO_BIN` if set, else `allegro` beside the running test binary.
    public static var url: URL {
        if let path = ProcessInfo.processInfo.environment["ALLEGRO_BIN"] { return URL(fileURLWithPath: path) }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        // The test binary lives inside AllegroPackageTests.xctest on Linux: step out of the bundle.
        while directory.pathExtension == "xctest" || !FileManager.default.fileExists(atPath: directory.appendingPathComponent("allegro").path) {
            let parent = directory.deletingLastPathComponent()
            if parent.path == directory.path { break }
            directory = parent
        }
        return directory.appendingPathComponent("allegro")
    }

    /// A fresh scratch directory, removed by the caller.
    public static func scratchDirectory() throws -> URL {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        return scratch
    }

    /// A started `allegro` process.
    public final class Running {
        public let process = Process()
        public let arguments: [String]
        public let scratch: URL
        public let outURL: URL
        public let errURL: URL

        /// `launcher` runs the binary under another program (`["/usr/bin/strace", "-f", ...]`).
        public init(_ arguments: [String], stdin: URL?, pipe: Pipe? = nil, environment: [String: String],
             launcher: [String] = []) throws {
            self.arguments = arguments
            scratch = try AllegroBinary.scratchDirectory()
            outURL = scratch.appendingPathComponent("out")
            errURL = scratch.appendingPathComponent("err")
            _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
            _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
            if let program = launcher.first {
                process.executableURL = URL(fileURLWithPath: program)
                process.arguments = Array(launcher.dropFirst()) + [AllegroBinary.url.path] + arguments
            } else {
                process.executableURL = AllegroBinary.url
                process.arguments = arguments
            }
            var merged = ProcessInfo.processInfo.environment
            merged["ALLEGRO_PRODUCER_TOKEN"] = nil
            merged["ALLEGRO_COLLECTOR_TOKEN"] = nil
            for (key, value) in environment { merged[key] = value }
            process.environment = merged
            process.standardOutput = try FileHandle(forWritingTo: outURL)
            process.standardError = try FileHandle(forWritingTo: errURL)
            if let pipe {
                process.standardInput = pipe
            } else {
                process.standardInput = try stdin.map { try FileHandle(forReadingFrom: $0) } ?? FileHandle.nullDevice
            }
            try process.run()
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
            try? FileManager.default.removeItem(at: scratch)
        }

        public var stderr: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }

        /// Waits for exit; kills the process and throws `TimedOut` after `timeout` seconds.
        public func wait(timeout: TimeInterval) throws -> Result {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(2000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw TimedOut(arguments: arguments)
            }
            return Result(status: process.terminationStatus,
                          stdoutData: (try? Data(contentsOf: outURL)) ?? Data(), stderr: stderr)
        }
    }

    public static func start(_ arguments: [String], stdin: URL? = nil, environment: [String: String] = [:],
                      launcher: [String] = []) throws -> Running {
        try Running(arguments, stdin: stdin, environment: environment, launcher: launcher)
    }

    /// Starts with standard input from a pipe the test writes to (and closes for end of input).
    public static func start(_ arguments: [String], pipe: Pipe) throws -> Running {
        try Running(arguments, stdin: nil, pipe: pipe, environment: [:])
    }

    public static func run(_ arguments: [String], stdin: URL? = nil, environment: [String: String] = [:],
                    timeout: TimeInterval = 60) throws -> Result {
        try start(arguments, stdin: stdin, environment: environment).wait(timeout: timeout)
    }
}
