import AllegroPosix

/// One line per event on standard error: `level=info event=listening address=127.0.0.1:7400`.
/// Values with spaces are quoted. Tokens are never passed here.
public struct RelayLog: Sendable {
    public enum Level: Int, Sendable, Comparable {
        case debug, info, warning, error
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var name: String { ["debug", "info", "warning", "error"][rawValue] }
    }

    public var minimum: Level

    public init(minimum: Level = .info) { self.minimum = minimum }

    public func log(_ level: Level, _ event: String, _ fields: KeyValuePairs<String, String> = [:]) {
        guard level >= minimum else { return }
        var line = "level=\(level.name) event=\(event)"
        for (key, value) in fields {
            line += " \(key)=" + (value.contains(" ") || value.isEmpty ? "\"\(value.replacingQuotes)\"" : value)
        }
        StandardStreams.error(line)
    }
}

extension String {
    fileprivate var replacingQuotes: String {
        var out = ""
        for character in self { out += character == "\"" ? "'" : String(character) }
        return out
    }
}
