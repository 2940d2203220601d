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
        return lines.joined(separator: "\n")
    }

    /// The value as YAML; nil for an unset token.
    private static func value(of setting: Setting, in settings: AllegroSettings) -> String? {
        switch setting.kind {
        case let .integer(path): String(settings[keyPath: path])
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
