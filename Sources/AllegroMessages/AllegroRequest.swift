/// An Allegro Request (the seed's format, protocol/MESSAGES.md): Allegro asking Timmy for a
/// decision, an approval, a review, or telling him of an alert. A value that exists is valid and
/// renders; Markdown, JSON and Telegram HTML are its three forms, and the first two read back to
/// an equal value.
public struct AllegroRequest: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case decision, approval, review, alert }
    public enum Urgency: String, Sendable, CaseIterable { case low, medium, high, critical }

    public static let heading = "## 🔄 Allegro Request"
    static let headings = ["Type", "Urgency", "Context", "Question/Request", "Options", "Recommendation", "Time constraint"]

    public let type: Kind
    public let urgency: Urgency
    public let context: String
    public let question: String
    public let options: [String]
    public let recommendation: String
    public let timeConstraint: String

    public init(type: Kind, urgency: Urgency, context: String, question: String, options: [String] = [],
                recommendation: String, timeConstraint: String) throws(MessageError) {
        try FieldRules.singleLine(context, "context")
        try FieldRules.text(question, "question", headings: Self.headings)
        try FieldRules.items(options, "options")
        try FieldRules.text(recommendation, "recommendation", headings: Self.headings)
        try FieldRules.text(timeConstraint, "time_constraint", headings: Self.headings)
        self.type = type
        self.urgency = urgency
        self.context = context
        self.question = question
        self.options = options
        self.recommendation = recommendation
        self.timeConstraint = timeConstraint
    }

    public var markdown: String {
        var lines = [Self.heading, "**Type:** \(type.rawValue)", "**Urgency:** \(urgency.rawValue)", "**Context:** \(context)",
                     "**Question/Request:**", question, "**Options:**"]
        lines += options.enumerated().map { "\($0.offset + 1). \($0.element)" }
        lines += ["**Recommendation:**", recommendation, "**Time constraint:**", timeConstraint]
        return lines.joined(separator: "\n") + "\n"
    }

    public var telegramHTML: String {
        var lines = ["<b>🔄 Allegro Request</b>", "<b>Type:</b> \(type.rawValue)", "<b>Urgency:</b> \(urgency.rawValue)",
                     "<b>Context:</b> \(HTML.escape(context))", "<b>Question/Request:</b>", HTML.escape(question), "<b>Options:</b>"]
        lines += options.enumerated().map { "\($0.offset + 1). \(HTML.escape($0.element))" }
        lines += ["<b>Recommendation:</b>", HTML.escape(recommendation), "<b>Time constraint:</b>", HTML.escape(timeConstraint)]
        return lines.joined(separator: "\n") + "\n"
    }

    public var json: String {
        var object = CanonicalJSON.Object()
        object.add("context", .string(context))
        object.add("message", .string("allegro.request"))
        object.add("options", .array(options.map { .string($0) }))
        object.add("question", .string(question))
        object.add("recommendation", .string(recommendation))
        object.add("time_constraint", .string(timeConstraint))
        object.add("type", .string(type.rawValue))
        object.add("urgency", .string(urgency.rawValue))
        return object.text
    }

    /// Reads the Markdown form; errors name the line and the field.
    public init(markdown text: String) throws(MessageError) {
        var reader = try MarkdownReader(text, heading: Self.heading)
        let type = try reader.choice("Type", "type", Kind.self)
        let urgency = try reader.choice("Urgency", "urgency", Urgency.self)
        let context = try reader.value("Context", "context")
        try reader.expect("**Question/Request:**")
        let question = try reader.text("question", until: "**Options:**")
        let options = try reader.numberedItems("options", until: "**Recommendation:**")
        let recommendation = try reader.text("recommendation", until: "**Time constraint:**")
        let timeConstraint = try reader.text("time_constraint", until: nil)
        do throws(MessageError) {
            self = try AllegroRequest(type: type, urgency: urgency, context: context, question: question, options: options,
                                      recommendation: recommendation, timeConstraint: timeConstraint)
        } catch {
            throw reader.located(error)
        }
    }

    /// Reads the JSON form; errors name the key.
    public init(json text: String) throws(MessageError) {
        let object = try CanonicalJSON.object(text, message: "allegro.request",
                                              keys: ["context", "message", "options", "question", "recommendation", "time_constraint", "type", "urgency"])
        guard let type = Kind(rawValue: try object.string("type")) else {
            throw MessageError("type", "not one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let urgency = Urgency(rawValue: try object.string("urgency")) else {
            throw MessageError("urgency", "not one of \(Urgency.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = try AllegroRequest(type: type, urgency: urgency, context: try object.string("context"), question: try object.string("question"),
                                  options: try object.strings("options"), recommendation: try object.string("recommendation"),
                                  timeConstraint: try object.string("time_constraint"))
    }
}
