import AllegroPosix
import Logging

/// Allegro's log, on swift-log: one event per line, named first, with its fields as metadata.
/// Tokens are never passed here. The process chooses the handler (`KeyValueLogHandler` prints
/// `level=info event=listening address=127.0.0.1:7400`).
public struct EventLog: Sendable {
    public typealias Level = Logger.Level

    public let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    /// A logger labelled "allegro" at `minimum`.
    public init(minimum: Level = .info) {
        var logger = Logger(label: "allegro")
        logger.logLevel = minimum
        self.logger = logger
    }

    public func log(_ level: Level, _ event: String, _ fields: KeyValuePairs<String, String> = [:]) {
        guard level >= logger.logLevel else { return }
        var metadata = Logger.Metadata()
        for (key, value) in fields { metadata[key] = .string(value) }
        logger.log(level: level, "\(event)", metadata: metadata)
    }
}

/// A swift-log handler writing one line per message to standard error:
/// `level=warning event=<message> key=value ...`, keys sorted, values with spaces or quotes
/// quoted. A logger whose label is not "allegro" (a library's) adds `logger=<label>`.
public struct KeyValueLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "level=\(event.level.rawValue) event=" + Self.quoted(event.message.description)
        if label != "allegro" { line += " logger=" + Self.quoted(label) }
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        for key in fields.keys.sorted() {
            guard let value = fields[key] else { continue }
            line += " \(key)=" + Self.quoted(value.description)
        }
        StandardStreams.error(line)
    }

    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else {
            return value
        }
        var out = "\""
        for character in value {
            switch character {
            case "\"": out += "'"
            case "\n", "\r": out += " "
            default: out.append(character)
            }
        }
        return out + "\""
    }
}
