import AllegroPosix
import Foundation

/// Where a service's program is, and the environment it gets.
enum Executable {
    /// The file to run and what to call it (`argv[0]`): `allegro` is the supervisor's own binary,
    /// run as /proc/self/exe (so a deployment runs one version, and an upgrade that replaced the
    /// file does not break the next restart); a name with a `/` is taken as it is; any other is
    /// looked up on PATH. Nil when none is executable.
    static func resolve(_ name: String) -> (executable: String, argument0: String)? {
        if name == "allegro" {
            let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                .map { $0.hasSuffix(" (deleted)") ? String($0.dropLast(10)) : $0 } ?? "allegro"
            return ("/proc/self/exe", own)
        }
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? (name, name) : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return (candidate, candidate) }
        }
        return nil
    }

    /// What every service gets of the supervisor's environment: where programs are, who and
    /// where it runs, the locale. Nothing else (no token) unless the service passes it.
    static let base: Set<String> = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"]

    /// The base of the supervisor's environment, the variables `pass` names (a name, or a
    /// prefix ending in `*`), then `extra` on top, as NAME=VALUE texts.
    static func environment(_ extra: [String: String], pass: [String] = [], withheld: [String] = []) -> [String] {
        let own = ProcessInfo.processInfo.environment
        var chosen = own.filter { name, _ in
            guard !withheld.contains(where: { name.hasPrefix($0) }) else { return false }
            return base.contains(name) || pass.contains { $0.hasSuffix("*") ? name.hasPrefix($0.dropLast()) : name == $0 }
        }
        chosen.merge(extra) { _, new in new }
        return chosen.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
