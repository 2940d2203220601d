/// Reads a message's Markdown form line by line, in the one order the format allows, keeping the
/// line each field starts on so every error names it. Text is checked for CR and the final LF
/// before any line is read.
struct MarkdownReader {
    private let lines: [Substring]
    private var index = 0
    private var fieldLines: [String: Int] = [:]

    init(_ text: String, heading: String) throws(MessageError) {
        if let position = text.utf8.firstIndex(of: 0x0D) {
            let line = text.utf8[..<position].filter { $0 == 0x0A }.count + 1
            throw MessageError(line: line, "message", "a carriage return: lines end with LF alone")
        }
        guard text.unicodeScalars.last == "\n" else {
            throw MessageError(line: 1 + text.unicodeScalars.filter { $0 == "\n" }.count, "message", "the last line does not end with LF")
        }
        lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, Scalars.equal(first, heading) else {
            throw MessageError(line: 1, "message", "expected \(AllegroMessage.headingsText)")
        }
        index = 1
    }

    /// `**Label:** value` on the next line.
    mutating func value(_ label: String, _ field: String) throws(MessageError) -> String {
        try rest(after: "**\(label):** ", field, expected: "expected **\(label):** and its value")
    }

    /// What follows `prefix` on the next line, which must start with it.
    private mutating func rest(after prefix: String, _ field: String, expected: String) throws(MessageError) -> String {
        guard index < lines.count, let rest = Scalars.after(prefix, in: lines[index]) else {
            throw MessageError(line: index + 1, field, expected)
        }
        fieldLines[field] = index + 1
        index += 1
        return rest
    }

    /// A value that must be one of `T`'s cases.
    mutating func choice<T: RawRepresentable & CaseIterable>(_ label: String, _ field: String, _: T.Type) throws(MessageError) -> T
    where T.RawValue == String {
        let line = index + 1
        let text = try value(label, field)
        guard let chosen = T(rawValue: text) else {
            throw MessageError(line: line, field, "\"\(text)\" is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return chosen
    }

    mutating func expect(_ line: String) throws(MessageError) {
        guard index < lines.count, Scalars.equal(lines[index], line) else {
            throw MessageError(line: index + 1, "message", "expected \(line)")
        }
        index += 1
    }

    /// The lines up to the heading `until` (consumed), or to the end; at least one.
    mutating func text(_ field: String, until heading: String?) throws(MessageError) -> String {
        fieldLines[field] = index + 1
        let start = index
        while index < lines.count, heading.map({ !Scalars.equal(lines[index], $0) }) ?? true { index += 1 }
        if let heading {
            guard index < lines.count else { throw MessageError(line: index + 1, field, "expected \(heading) after it") }
        }
        guard index > start else { throw MessageError(line: start + 1, field, "empty") }
        let text = lines[start ..< index].joined(separator: "\n")
        if heading != nil { index += 1 }
        return text
    }

    /// `1. item`, `2. item` ... up to the heading `until` (consumed).
    mutating func numberedItems(_ field: String, until heading: String) throws(MessageError) -> [String] {
        try items(field, until: heading) { number in "\(number). " }
    }

    /// `- item` lines up to the heading `until` (consumed).
    mutating func bulletItems(_ field: String, until heading: String) throws(MessageError) -> [String] {
        try items(field, until: heading) { _ in "- " }
    }

    private mutating func items(_ field: String, until heading: String, marker: (Int) -> String) throws(MessageError) -> [String] {
        fieldLines[field] = index + 1
        var items: [String] = []
        while index < lines.count, !Scalars.equal(lines[index], heading) {
            let prefix = marker(items.count + 1)
            guard let item = Scalars.after(prefix, in: lines[index]) else {
                throw MessageError(line: index + 1, field, "expected \"\(prefix)...\" or \(heading)")
            }
            items.append(item)
            index += 1
        }
        guard index < lines.count else { throw MessageError(line: index + 1, field, "expected \(heading) after it") }
        index += 1
        return items
    }

    /// `- Label: value` on the next line.
    mutating func telemetry(_ label: String, _ field: String) throws(MessageError) -> String {
        try rest(after: "- \(label): ", field, expected: "expected \"- \(label): ...\"")
    }

    var line: Int { index + 1 }

    /// A construction error, placed on the line its field starts.
    func located(_ error: MessageError) -> MessageError {
        MessageError(line: error.line ?? fieldLines[error.field], error.field, error.reason)
    }
}

/// Either message, by its heading.
public enum AllegroMessage: Sendable, Equatable {
    case request(AllegroRequest)
    case report(AllegroReport)

    static let headingsText = "\(AllegroRequest.heading) or \(AllegroReport.heading)"

    public init(markdown text: String) throws(MessageError) {
        if Scalars.after(AllegroReport.heading, in: Substring(text)) != nil {
            self = .report(try AllegroReport(markdown: text))
        } else if Scalars.after(AllegroRequest.heading, in: Substring(text)) != nil {
            self = .request(try AllegroRequest(markdown: text))
        } else {
            throw MessageError(line: 1, "message", "expected \(Self.headingsText)")
        }
    }

    public init(json text: String) throws(MessageError) {
        switch try CanonicalJSON.messageKind(text) {
        case "allegro.report": self = .report(try AllegroReport(json: text))
        case "allegro.request": self = .request(try AllegroRequest(json: text))
        case let other: throw MessageError("message", "\"\(other)\" is not allegro.request or allegro.report")
        }
    }

    /// The record kind it travels under on the relay stream.
    public var kind: String {
        switch self {
        case .request: "allegro.request"
        case .report: "allegro.report"
        }
    }

    public var markdown: String {
        switch self {
        case let .request(request): request.markdown
        case let .report(report): report.markdown
        }
    }

    public var json: String {
        switch self {
        case let .request(request): request.json
        case let .report(report): report.json
        }
    }

    public var telegramHTML: String {
        switch self {
        case let .request(request): request.telegramHTML
        case let .report(report): report.telegramHTML
        }
    }
}

/// Telegram's HTML parse mode: `&`, `<` and `>` escaped in all text, scalar by scalar (a `<`
/// with a combining mark after it is still a `<`).
enum HTML {
    static func escape(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out.append(contentsOf: "&amp;".unicodeScalars)
            case "<": out.append(contentsOf: "&lt;".unicodeScalars)
            case ">": out.append(contentsOf: "&gt;".unicodeScalars)
            default: out.append(scalar)
            }
        }
        return String(out)
    }
}

/// Comparisons on Unicode scalars (protocol/MESSAGES.md section 1), never on `Character`s: a
/// label's space followed by a combining mark still ends the label, and equal means the same
/// code points, not canonically equivalent ones.
enum Scalars {
    static func equal(_ line: Substring, _ text: String) -> Bool {
        line.unicodeScalars.elementsEqual(text.unicodeScalars)
    }

    /// What follows `prefix` in `line`, or nil when `line` does not start with it.
    static func after(_ prefix: String, in line: Substring) -> String? {
        guard line.unicodeScalars.starts(with: prefix.unicodeScalars) else { return nil }
        return String(String.UnicodeScalarView(line.unicodeScalars.dropFirst(prefix.unicodeScalars.count)))
    }
}
