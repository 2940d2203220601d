/// An Allegro Report (the seed's format, protocol/MESSAGES.md): what Allegro did for Timmy, with
/// its telemetry. Like `AllegroRequest`: valid once built, three forms, two of them read back.
public struct AllegroReport: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable {
        case complete
        case inProgress = "in-progress"
        case blocked, failed
    }

    /// Executions, success rate (kept in tenths of a percent: one decimal, as written) and
    /// average latency.
    public struct Telemetry: Sendable, Equatable {
        public let executions: Int64
        public let successRateTenths: Int
        public let avgLatencyMillis: Int64

        public init(executions: Int64, successRatePercent: Double, avgLatencyMillis: Int64) throws(MessageError) {
            guard executions >= 0 else { throw MessageError("telemetry.executions", "below 0") }
            guard successRatePercent.isFinite, (0 ... 100).contains(successRatePercent) else {
                throw MessageError("telemetry.success_rate_percent", "not a number from 0 to 100")
            }
            guard avgLatencyMillis >= 0 else { throw MessageError("telemetry.avg_latency_ms", "below 0") }
            self.executions = executions
            successRateTenths = Int((successRatePercent * 10).rounded())
            self.avgLatencyMillis = avgLatencyMillis
        }

        public var successRatePercent: Double { Double(successRateTenths) / 10 }
        var successRateText: String { "\(successRateTenths / 10).\(successRateTenths % 10)" }
    }

    public static let heading = "## ✅ Allegro Report"
    static let headings = ["Task", "Status", "Duration", "Results", "Artifacts", "Telemetry", "Next Steps"]

    public let task: String
    public let status: Status
    public let duration: String
    public let results: String
    public let artifacts: [String]
    public let telemetry: Telemetry
    public let nextSteps: String

    public init(task: String, status: Status, duration: String, results: String, artifacts: [String] = [],
                telemetry: Telemetry, nextSteps: String) throws(MessageError) {
        try FieldRules.singleLine(task, "task")
        try FieldRules.singleLine(duration, "duration")
        try FieldRules.text(results, "results", headings: Self.headings)
        try FieldRules.items(artifacts, "artifacts")
        try FieldRules.text(nextSteps, "next_steps", headings: Self.headings)
        self.task = task
        self.status = status
        self.duration = duration
        self.results = results
        self.artifacts = artifacts
        self.telemetry = telemetry
        self.nextSteps = nextSteps
    }

    private var telemetryLines: [String] {
        ["- Executions: \(telemetry.executions)", "- Success rate: \(telemetry.successRateText)%",
         "- Avg latency: \(telemetry.avgLatencyMillis)ms"]
    }

    public var markdown: String {
        var lines = [Self.heading, "**Task:** \(task)", "**Status:** \(status.rawValue)", "**Duration:** \(duration)",
                     "**Results:**", results, "**Artifacts:**"]
        lines += artifacts.map { "- \($0)" }
        lines += ["**Telemetry:**"] + telemetryLines + ["**Next Steps:**", nextSteps]
        return lines.joined(separator: "\n") + "\n"
    }

    public var telegramHTML: String {
        var lines = ["<b>✅ Allegro Report</b>", "<b>Task:</b> \(HTML.escape(task))", "<b>Status:</b> \(status.rawValue)",
                     "<b>Duration:</b> \(HTML.escape(duration))", "<b>Results:</b>", HTML.escape(results), "<b>Artifacts:</b>"]
        lines += artifacts.map { "- \(HTML.escape($0))" }
        lines += ["<b>Telemetry:</b>"] + telemetryLines + ["<b>Next Steps:</b>", HTML.escape(nextSteps)]
        return lines.joined(separator: "\n") + "\n"
    }

    public var json: String {
        var object = CanonicalJSON.Object()
        object.add("artifacts", .array(artifacts.map { .string($0) }))
        object.add("duration", .string(duration))
        object.add("message", .string("allegro.report"))
        object.add("next_steps", .string(nextSteps))
        object.add("results", .string(results))
        object.add("status", .string(status.rawValue))
        object.add("task", .string(task))
        var numbers = CanonicalJSON.Object()
        numbers.add("avg_latency_ms", .integer(telemetry.avgLatencyMillis))
        numbers.add("executions", .integer(telemetry.executions))
        numbers.add("success_rate_percent", .tenths(telemetry.successRateTenths))
        object.add("telemetry", numbers.value)
        return object.text
    }

    public init(markdown text: String) throws(MessageError) {
        var reader = try MarkdownReader(text, heading: Self.heading)
        let task = try reader.value("Task", "task")
        let status = try reader.choice("Status", "status", Status.self)
        let duration = try reader.value("Duration", "duration")
        try reader.expect("**Results:**")
        let results = try reader.text("results", until: "**Artifacts:**")
        let artifacts = try reader.bulletItems("artifacts", until: "**Telemetry:**")
        let line = reader.line
        let executionsText = try reader.telemetry("Executions", "telemetry.executions")
        let rateText = try reader.telemetry("Success rate", "telemetry.success_rate_percent")
        let latencyText = try reader.telemetry("Avg latency", "telemetry.avg_latency_ms")
        try reader.expect("**Next Steps:**")
        let nextSteps = try reader.text("next_steps", until: nil)
        guard let executions = Int64(executionsText), executions >= 0, String(executions) == executionsText else {
            throw MessageError(line: line, "telemetry.executions", "\"\(executionsText)\" is not a whole number of 0 or more")
        }
        guard let rate = Self.tenths(rateText) else {
            throw MessageError(line: line + 1, "telemetry.success_rate_percent", "\"\(rateText)\" is not a number from 0.0 to 100.0 with one decimal and %")
        }
        guard latencyText.hasSuffix("ms"), let latency = Int64(latencyText.dropLast(2)), latency >= 0, "\(latency)ms" == latencyText else {
            throw MessageError(line: line + 2, "telemetry.avg_latency_ms", "\"\(latencyText)\" is not a whole number of milliseconds (like 42ms)")
        }
        do throws(MessageError) {
            let telemetry = try Telemetry(executions: executions, successRatePercent: Double(rate) / 10, avgLatencyMillis: latency)
            self = try AllegroReport(task: task, status: status, duration: duration, results: results, artifacts: artifacts,
                                     telemetry: telemetry, nextSteps: nextSteps)
        } catch {
            throw reader.located(error)
        }
    }

    public init(json text: String) throws(MessageError) {
        let object = try CanonicalJSON.object(text, message: "allegro.report",
                                              keys: ["artifacts", "duration", "message", "next_steps", "results", "status", "task", "telemetry"])
        guard let status = Status(rawValue: try object.string("status")) else {
            throw MessageError("status", "not one of \(Status.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let telemetry = try object.object("telemetry", keys: ["executions", "success_rate_percent", "avg_latency_ms"])
        self = try AllegroReport(task: try object.string("task"), status: status, duration: try object.string("duration"),
                                 results: try object.string("results"), artifacts: try object.strings("artifacts"),
                                 telemetry: try Telemetry(executions: try telemetry.integer("executions"),
                                                          successRatePercent: Double(try telemetry.tenths("success_rate_percent")) / 10,
                                                          avgLatencyMillis: try telemetry.integer("avg_latency_ms")),
                                 nextSteps: try object.string("next_steps"))
    }

    /// `98.5%` to 985: digits, one decimal, a percent sign, 0.0 ... 100.0.
    static func tenths(_ text: String) -> Int? {
        guard text.hasSuffix("%") else { return nil }
        let number = text.dropLast()
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].count == 1, let whole = Int(parts[0]), let tenth = Int(parts[1]),
              String(whole) == parts[0], whole >= 0 else { return nil }
        let value = whole * 10 + tenth
        return value <= 1000 ? value : nil
    }
}
