import AllegroRelay
import AllegroSupervisor
import Foundation

extension SettingsLoader {
    /// Every key, in the order `config check` prints them.
    public static var keys: [String] { SettingsCatalog.all.map(\.key) }
}

extension SettingsLoader.Loaded {
    /// The effective settings as YAML that `allegro relay --config` accepts back, tokens
    /// masked, each line commented with where its value came from.
    public func rendered() -> String {
        var lines = ["# allegro: effective configuration (tokens masked)"]
        let width = SettingsCatalog.all.map { $0.key.count }.max() ?? 0
        var section = ""
        for setting in SettingsCatalog.all {
            let value = Self.value(of: setting, in: settings)
            // A section's keys go one level down, under its name.
            var name = setting.key
            if let dot = name.firstIndex(of: ".") {
                let prefix = String(name[..<dot])
                if prefix != section { lines.append(prefix + ":"); section = prefix }
                name = "  " + name[name.index(after: dot)...]
            }
            // An unset token is shown as a comment: the output is itself a valid configuration.
            let entry = (value == nil ? "# " : "") + name + ": " + (value ?? "(unset)")
            let padding = String(repeating: " ", count: max(1, width + 24 - entry.count))
            lines.append(entry + padding + "# " + (sources[setting.key] ?? "default"))
        }
        if let services = settings.supervisor.services {
            lines.append("services:" + String(repeating: " ", count: max(1, width + 24 - 9)) + "# " + (sources["services"] ?? "the file"))
            for service in services { lines += Self.lines(of: service) }
        } else {
            lines.append("# services: (none listed: allegro supervise runs the relay alone)")
        }
        if let fleet = settings.supervisor.fleet {
            lines.append("fleet:" + String(repeating: " ", count: max(1, width + 24 - 6)) + "# " + (sources["fleet"] ?? "the file"))
            lines.append("  host: " + Self.quoted(fleet.host))
            lines.append("  peers:")
            for peer in fleet.peers { lines.append("    - {name: \(Self.quoted(peer.name)), url: \(Self.quoted(peer.url))}") }
            lines.append("  duties:")
            for (duty, hosts) in fleet.duties.sorted(by: { $0.key < $1.key }) {
                lines.append("    \(duty): [" + hosts.map(Self.quoted).joined(separator: ", ") + "]")
            }
            lines += ["  check_ms: \(fleet.checkMillis)", "  failures: \(fleet.failures)", "  giveback_ms: \(fleet.givebackMillis)"]
        }
        return lines.joined(separator: "\n")
    }

    /// One service as YAML that reads back (environment values masked, like tokens).
    static func lines(of service: ServiceSpec) -> [String] {
        func list(_ items: [String]) -> String { "[" + items.map(quoted).joined(separator: ", ") + "]" }
        var lines = ["  - name: " + quoted(service.name)]
        switch service.kind {
        case let .command(arguments): lines.append("    command: " + list(arguments))
        case let .systemd(unit): lines.append("    systemd: " + quoted(unit))
        }
        if !service.environment.isEmpty {
            lines.append("    environment: {" + service.environment.keys.sorted().map { "\($0): \"********\"" }.joined(separator: ", ") + "}")
        }
        if !service.passEnvironment.isEmpty { lines.append("    pass_environment: " + list(service.passEnvironment)) }
        if let directory = service.directory { lines.append("    directory: " + quoted(directory)) }
        lines.append("    stop_grace_ms: \(service.stopGraceMillis)")
        if let duty = service.duty { lines.append("    duty: " + quoted(duty)) }
        if let probe = service.probe {
            let kind: String
            switch probe.kind {
            case let .http(url): kind = "http: " + quoted(url)
            case let .tcp(host, port): kind = "tcp: " + quoted(host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
            case let .command(arguments): kind = "command: " + list(arguments)
            }
            lines.append("    probe: {\(kind), interval_ms: \(probe.intervalMillis), timeout_ms: \(probe.timeoutMillis), "
                         + "failures: \(probe.failures), grace_ms: \(probe.graceMillis)}")
        }
        return lines
    }

    /// The value as YAML; nil for an unset token.
    private static func value(of setting: Setting, in settings: AllegroSettings) -> String? {
        switch setting.kind {
        case let .integer(path): String(settings[keyPath: path])
        case let .milliseconds(path): DecimalMilliseconds.text(micros: settings[keyPath: path])
        case let .text(path): quoted(settings[keyPath: path])
        case let .secret(path): settings[keyPath: path] == nil ? nil : "\"********\""
        case let .list(path): "[" + settings[keyPath: path].map(quoted).joined(separator: ", ") + "]"
        case .level: settings.logLevel.rawValue
        case .http: settings.http.map(quoted) ?? "off"
        case let .parsed(_, show): quoted(show(settings))
        }
    }

    private static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
