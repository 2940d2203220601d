/// An alert: a condition Allegro raises (`firing`) and later clears (`resolved`), the payload of
/// an `allegro.alert` record (protocol/MESSAGES.md, "Allegro Alert"). Alerts are keyed by
/// `alert` and `subject`: the same key firing twice is one alert. A value that exists is valid;
/// its JSON form reads back to an equal value.
public struct AllegroAlert: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable { case firing, resolved }
    public enum Severity: String, Sendable, CaseIterable { case info, warning, critical }

    /// The record kind alerts travel under.
    public static let kind = "allegro.alert"
    static let keys: Set<String> = ["alert", "details", "message", "severity", "since_ms", "status", "subject", "summary"]
    static let maxNameBytes = 64
    static let maxSubjectScalars = 200
    static let maxSummaryScalars = 1000
    static let maxDetailsScalars = 8192

    /// What is wrong, as a name: `collector_away`, `spill_write_failed`, ...
    public let alert: String
    /// What it is wrong with: a collector's name, a relay's id.
    public let subject: String
    public let status: Status
    public let severity: Severity
    /// One line for a person.
    public let summary: String
    /// More lines, or empty.
    public let details: String
    /// When the condition began, in Unix milliseconds.
    public let sinceMillis: Int64

    public init(alert: String, subject: String, status: Status, severity: Severity, summary: String,
                details: String = "", sinceMillis: Int64) throws(MessageError) {
        guard !alert.isEmpty, alert.utf8.count <= Self.maxNameBytes,
              alert.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D })
        else { throw MessageError("alert", "1 ... \(Self.maxNameBytes) characters of a-z, 0-9, _ . -") }
        try FieldRules.singleLine(subject, "subject")
        guard subject.unicodeScalars.count <= Self.maxSubjectScalars else {
            throw MessageError("subject", "longer than \(Self.maxSubjectScalars) characters")
        }
        try FieldRules.singleLine(summary, "summary")
        guard summary.unicodeScalars.count <= Self.maxSummaryScalars else {
            throw MessageError("summary", "longer than \(Self.maxSummaryScalars) characters")
        }
        if !details.isEmpty { try FieldRules.text(details, "details", headings: []) }
        guard details.unicodeScalars.count <= Self.maxDetailsScalars else {
            throw MessageError("details", "longer than \(Self.maxDetailsScalars) characters")
        }
        guard sinceMillis >= 0 else { throw MessageError("since_ms", "below 0") }
        self.alert = alert
        self.subject = subject
        self.status = status
        self.severity = severity
        self.summary = summary
        self.details = details
        self.sinceMillis = sinceMillis
    }

    /// The same alert with another status (a firing alert's resolution keeps its key and start).
    public func with(status: Status, summary: String? = nil) -> AllegroAlert {
        // Every field was checked when `self` was built; a new summary is checked like any.
        (try? AllegroAlert(alert: alert, subject: subject, status: status, severity: severity, summary: summary ?? self.summary,
                           details: details, sinceMillis: sinceMillis)) ?? self
    }

    public var json: String {
        var object = CanonicalJSON.Object()
        object.add("alert", .string(alert))
        object.add("details", .string(details))
        object.add("message", .string(Self.kind))
        object.add("severity", .string(severity.rawValue))
        object.add("since_ms", .integer(sinceMillis))
        object.add("status", .string(status.rawValue))
        object.add("subject", .string(subject))
        object.add("summary", .string(summary))
        return object.text
    }

    /// Reads the JSON form; errors name the key.
    public init(json text: String) throws(MessageError) {
        let object = try CanonicalJSON.object(text, message: Self.kind, keys: Self.keys)
        guard let status = Status(rawValue: try object.string("status")) else {
            throw MessageError("status", "not one of \(Status.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let severity = Severity(rawValue: try object.string("severity")) else {
            throw MessageError("severity", "not one of \(Severity.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = try AllegroAlert(alert: try object.string("alert"), subject: try object.string("subject"), status: status,
                                severity: severity, summary: try object.string("summary"), details: try object.string("details"),
                                sinceMillis: try object.integer("since_ms"))
    }
}

/// Telegram's HTML parse mode for callers outside this module.
public enum TelegramHTML {
    public static func escape(_ text: String) -> String { HTML.escape(text) }
}
