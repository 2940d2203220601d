/// A message that cannot be built or read, naming the field (its JSON key) and, for Markdown,
/// the line: `line 3: urgency: "urgent" is not one of low, medium, high, critical`.
public struct MessageError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int?
    public let field: String
    public let reason: String

    public init(line: Int? = nil, _ field: String, _ reason: String) {
        self.line = line
        self.field = field
        self.reason = reason
    }

    public var description: String { (line.map { "line \($0): " } ?? "") + "\(field): \(reason)" }
}

/// The checks every field shares: single lines, multi-line texts, list items.
enum FieldRules {
    /// One non-empty line without control characters.
    static func singleLine(_ value: String, _ field: String) throws(MessageError) {
        guard !value.isEmpty else { throw MessageError(field, "empty") }
        if let bad = value.unicodeScalars.first(where: isControl) {
            throw MessageError(field, bad == "\n" ? "one line only" : "control character U+\(hex(bad)) in it")
        }
    }

    /// Lines of text: not empty, no empty first or last line, no control characters but LF, and
    /// no line that reads as one of the message's headings (the parse could not tell them apart).
    static func text(_ value: String, _ field: String, headings: [String]) throws(MessageError) {
        guard !value.isEmpty else { throw MessageError(field, "empty") }
        if let bad = value.unicodeScalars.first(where: { $0 != "\n" && isControl($0) }) {
            throw MessageError(field, "control character U+\(hex(bad)) in it")
        }
        let lines = value.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.first?.isEmpty == true || lines.last?.isEmpty == true {
            throw MessageError(field, "starts or ends with an empty line")
        }
        for line in lines where isHeading(line, headings) {
            throw MessageError(field, "the line \"\(line)\" reads as a heading of the message")
        }
    }

    static func items(_ values: [String], _ field: String) throws(MessageError) {
        for (index, value) in values.enumerated() {
            do throws(MessageError) { try singleLine(value, field) } catch {
                throw MessageError(field, "item \(index + 1): \(error.reason)")
            }
        }
    }

    static func isHeading(_ line: Substring, _ headings: [String]) -> Bool {
        headings.contains { Scalars.equal(line, "**\($0):**") || Scalars.after("**\($0):** ", in: line) != nil }
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || (0x80 ..< 0xA0).contains(scalar.value)
    }

    private static func hex(_ scalar: Unicode.Scalar) -> String {
        let digits = String(scalar.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
