import AllegroMessages
import AllegroRelay

/// When the relay raises its alerts, and when it reports (config/README.md, "Alerts").
public struct RelayWatchSettings: Sendable, Equatable {
    /// How often the conditions are evaluated; 0 turns alerts and the daily report off.
    public var intervalMillis = 5_000
    /// A durable collector disconnected longer than this is away.
    public var collectorAwayMillis = 600_000
    /// Warn when retention would remove a durable collector's uncommitted records within this
    /// time (by age), or when the spill passes 80% of `retention_max_bytes` while it has any.
    public var retentionWarningMillis = 86_400_000
    /// Warn when the data directory's file system has less than this share free.
    public var diskFreePercent = 10
    /// `records_lost` stays firing this long after the last loss (it is an event, not a state).
    public var recordsLostHoldMillis = 3_600_000
    /// The daily report's time of day, UTC, in seconds after midnight; nil: no daily report.
    public var dailyReportSecond: Int? = 8 * 3600

    public init() {}

    /// Reads `HH:MM` or `HH:MM:SS` (UTC), or `off`.
    public static func parseTimeOfDay(_ text: String) -> Int?? {
        if text == "off" { return .some(nil) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (2 ... 3).contains(parts.count), parts.allSatisfy({ $0.count == 2 }),
              let hour = Int(parts[0]), let minute = Int(parts[1]), (0 ..< 24).contains(hour), (0 ..< 60).contains(minute)
        else { return nil }
        let second = parts.count == 3 ? Int(parts[2]) ?? -1 : 0
        guard (0 ..< 60).contains(second) else { return nil }
        return .some(hour * 3600 + minute * 60 + second)
    }
}

/// What the watch sees at one evaluation: the relay's status and its disk.
public struct WatchFacts: Sendable {
    public var status: RelayStatus
    /// Share of the data directory's file system that is free (nil: unknown).
    public var diskFreePercent: Double?
    public var diskFreeBytes: Int64?
    public var nowMillis: Int64
    public var retentionMaxAgeMillis: Int
    public var retentionMaxBytes: Int

    public init(status: RelayStatus, diskFreePercent: Double?, diskFreeBytes: Int64?, nowMillis: Int64,
                retentionMaxAgeMillis: Int, retentionMaxBytes: Int) {
        self.status = status
        self.diskFreePercent = diskFreePercent
        self.diskFreeBytes = diskFreeBytes
        self.nowMillis = nowMillis
        self.retentionMaxAgeMillis = retentionMaxAgeMillis
        self.retentionMaxBytes = retentionMaxBytes
    }
}

/// The relay's alert rules as a state machine apart from I/O: given the facts of one
/// evaluation, it returns the alerts whose state changed (a condition that began fires, one
/// that ended resolves) and remembers which are active. A condition that goes on raises
/// nothing new: one alert per condition, keyed by name and subject.
public struct RelayWatch: Sendable {
    /// An alert's identity: its name and what it is about.
    public struct Key: Hashable, Sendable, Comparable {
        public var alert: String
        public var subject: String
        public init(alert: String, subject: String) {
            self.alert = alert
            self.subject = subject
        }
        public static func < (a: Key, b: Key) -> Bool { (a.alert, a.subject) < (b.alert, b.subject) }
    }

    public let settings: RelayWatchSettings
    /// The alerts firing now.
    public private(set) var active: [Key: AllegroAlert] = [:]
    private var awaySinceMillis: [String: Int64] = [:]
    private var droppedSeen: UInt64 = 0
    private var lastLossMillis: Int64?
    private var lossStartMillis: Int64 = 0
    /// Why alerts could not be built since the last `takeRefused` (for the log).
    private var refused: [String] = []

    /// `restored`: the alerts that were active when the relay last stopped; those whose
    /// condition has ended by the first evaluation resolve then.
    public init(settings: RelayWatchSettings, restored: [AllegroAlert] = []) {
        self.settings = settings
        for alert in restored where alert.status == .firing {
            active[Key(alert: alert.alert, subject: alert.subject)] = alert
            if alert.alert == "collector_away" { awaySinceMillis[alert.subject] = alert.sinceMillis }
            if alert.alert == "records_lost" { lossStartMillis = alert.sinceMillis }
        }
    }

    /// Why alerts could not be built since the last call (never expected: their parts are
    /// checked here; logged, not trapped).
    public mutating func takeRefused() -> [String] {
        defer { refused = [] }
        return refused
    }

    private struct Condition {
        var severity: AllegroAlert.Severity
        var summary: String
        var details = ""
        var sinceMillis: Int64
    }

    /// Evaluates every rule; returns the changes, firing and resolved, in key order.
    public mutating func evaluate(_ facts: WatchFacts) -> [AllegroAlert] {
        let now = facts.nowMillis
        var conditions: [Key: Condition] = [:]
        let relay = facts.status.relayID.isEmpty ? "relay" : facts.status.relayID
        // A records_lost active at the last stop holds for its time again from the first evaluation.
        if lastLossMillis == nil, active.keys.contains(where: { $0.alert == "records_lost" }) { lastLossMillis = now }

        if let failure = facts.status.spill.failure {
            conditions[Key(alert: "spill_write_failed", subject: relay)] = Condition(
                severity: .critical, summary: "the spill cannot write: \(failure); acks and ingest are paused", sinceMillis: now)
        }
        for var collector in facts.status.collectors where collector.durable {
            collector.name = Self.printable(collector.name)
            if collector.connected {
                awaySinceMillis[collector.name] = nil
            } else {
                let since = awaySinceMillis[collector.name] ?? now
                awaySinceMillis[collector.name] = since
                if now - since >= Int64(settings.collectorAwayMillis) {
                    conditions[Key(alert: "collector_away", subject: collector.name)] = Condition(
                        severity: .warning,
                        summary: "durable collector \(collector.name) has been away for \(Self.duration(now - since)); \(collector.lagRecords) records wait for it",
                        sinceMillis: since)
                }
            }
            if let warning = retentionWarning(collector, facts) {
                conditions[Key(alert: "retention_warning", subject: collector.name)] = warning
            }
        }
        let dropped = facts.status.retention.droppedRecords
        if dropped > droppedSeen {
            if lastLossMillis == nil { lossStartMillis = now }
            lastLossMillis = now
        }
        if let last = lastLossMillis, now - last < Int64(settings.recordsLostHoldMillis) {
            conditions[Key(alert: "records_lost", subject: relay)] = Condition(
                severity: .critical,
                summary: "retention removed \(dropped) records a durable collector had not committed (since the relay started)",
                sinceMillis: lossStartMillis)
        } else {
            lastLossMillis = nil
        }
        droppedSeen = max(droppedSeen, dropped)
        if let free = facts.diskFreePercent, free < Double(settings.diskFreePercent) {
            let bytes = facts.diskFreeBytes.map { ", \(Self.bytes($0)) left" } ?? ""
            conditions[Key(alert: "disk_filling", subject: relay)] = Condition(
                severity: free < Double(settings.diskFreePercent) / 2 ? .critical : .warning,
                summary: "the data directory's disk is \(Int((100 - free).rounded()))% full\(bytes)", sinceMillis: now)
        }
        return transitions(to: conditions, now: now)
    }

    private func retentionWarning(_ collector: RelayStatus.Collector, _ facts: WatchFacts) -> Condition? {
        guard collector.lagRecords > 0 else { return nil }
        let ageMillis = Int64(collector.lagSeconds * 1000)
        let leftMillis = Int64(facts.retentionMaxAgeMillis) - ageMillis
        if leftMillis <= Int64(settings.retentionWarningMillis) {
            return Condition(severity: .warning,
                             summary: "\(collector.lagRecords) records \(collector.name) has not committed; retention removes the oldest in about \(Self.duration(max(leftMillis, 0)))",
                             details: "retention_max_age_ms is \(facts.retentionMaxAgeMillis); the oldest uncommitted record is \(Self.duration(ageMillis)) old",
                             sinceMillis: facts.nowMillis)
        }
        // By size: retention removes the oldest segments once the spill passes its limit. The
        // share of the spill this collector has not committed (its records over all records in
        // the spill) tells whether that would cut into its backlog: warn past 80% of the limit.
        let limit = facts.retentionMaxBytes
        let spilled = facts.status.nextSequence &- (facts.status.spill.oldestSequence ?? facts.status.nextSequence)
        if limit > 0, spilled > 0 {
            let backlogBytes = Double(facts.status.spill.bytes) * Double(min(collector.lagRecords, spilled)) / Double(spilled)
            if backlogBytes >= Double(limit) * 0.8 {
                return Condition(severity: .warning,
                                 summary: "\(collector.lagRecords) records \(collector.name) has not committed fill \(Int(backlogBytes * 100 / Double(limit)))% of retention_max_bytes; retention removes the oldest first",
                                 sinceMillis: facts.nowMillis)
            }
        }
        return nil
    }

    private mutating func transitions(to conditions: [Key: Condition], now: Int64) -> [AllegroAlert] {
        var changes: [AllegroAlert] = []
        for key in Set(active.keys).union(conditions.keys).sorted() {
            switch (active[key], conditions[key]) {
            case let (nil, condition?):
                // Built here from printable parts cut to size; a refusal would be a bug here,
                // reported through `takeRefused`, never a trap.
                let alert: AllegroAlert
                do {
                    alert = try AllegroAlert(alert: key.alert, subject: Self.cut(key.subject, 200), status: .firing,
                                             severity: condition.severity, summary: Self.cut(condition.summary, 1000),
                                             details: condition.details, sinceMillis: max(condition.sinceMillis, 0))
                } catch {
                    refused.append("\(key.alert) \(key.subject): \(error)")
                    continue
                }
                active[key] = alert
                changes.append(alert)
            case let (alert?, nil):
                active[key] = nil
                changes.append(alert.with(status: .resolved, summary: "resolved after \(Self.duration(now - alert.sinceMillis)): \(alert.summary)"))
            default:
                continue
            }
        }
        return changes
    }

    /// Control characters (which a configured name may hold) shown as `?`.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || (0x7F ..< 0xA0).contains($0.value) ? "?" : $0 }))
    }

    /// At most `scalars` Unicode scalars (the alert's limits count scalars, not characters).
    static func cut(_ text: String, _ scalars: Int) -> String {
        text.unicodeScalars.count <= scalars ? text : String(String.UnicodeScalarView(text.unicodeScalars.prefix(scalars)))
    }

    static func duration(_ millis: Int64) -> String {
        let seconds = max(millis, 0) / 1000
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return "\(seconds / 60) min" }
        return "\(seconds / 3600) h \(seconds % 3600 / 60) min"
    }

    static func bytes(_ value: Int64) -> String {
        if value >= 1 << 30 { return "\(value >> 30) GiB" }
        if value >= 1 << 20 { return "\(value >> 20) MiB" }
        return "\(value >> 10) KiB"
    }
}
