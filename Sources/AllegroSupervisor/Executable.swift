import AllegroPosix
import Foundation

/// Where a service's program is, and the environment it gets.
enum Executable {
    /// `allegro` is the supervisor's own binary (so a deployment runs one version); a name with
    /// a `/` is taken as it is; any other is looked up on PATH. Nil when none is executable.
    static func resolve(_ name: String) -> String? {
        if name == "allegro" { return ownBinary() }
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// This process's binary (/proc/self/exe), so `allegro` means this very build.
    static func ownBinary() -> String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments.first
    }

    /// The supervisor's environment with `extra` on top, as NAME=VALUE texts.
    static func environment(_ extra: [String: String]) -> [String] {
        ProcessInfo.processInfo.environment.merging(extra) { _, new in new }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
