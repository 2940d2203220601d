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
    public struct Key: Hashable, Sendable, Comparable {
        public var alert: String
        public var subject: String
        public static func < (a: Key, b: Key) -> Bool { (a.alert, a.subject) < (b.alert, b.subject) }
    }

    public let settings: RelayWatchSettings
    /// The alerts firing now.
    public private(set) var active: [Key: AllegroAlert] = [:]
    private var awaySinceMillis: [String: Int64] = [:]
    private var droppedSeen: UInt64 = 0
    private var lastLossMillis: Int64?
    private var lossStartMillis: Int64 = 0

    /// `restored`: the alerts that were active when the relay last stopped; those whose
    /// condition has ended by the first evaluation resolve then.
    public init(settings: RelayWatchSettings, restored: [AllegroAlert] = []) {
        self.settings = settings
        for alert in restored where alert.status == .firing {
            active[Key(alert: alert.alert, subject: alert.subject)] = alert
            if alert.alert == "collector_away" { awaySinceMillis[alert.subject] = alert.sinceMillis }
        }
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

        if let failure = facts.status.spill.failure {
            conditions[Key(alert: "spill_write_failed", subject: relay)] = Condition(
                severity: .critical, summary: "the spill cannot write: \(failure); acks and ingest are paused", sinceMillis: now)
        }
        for collector in facts.status.collectors where collector.durable {
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
        let limit = facts.retentionMaxBytes
        if limit > 0, facts.status.spill.bytes * 100 >= limit * 80 {
            return Condition(severity: .warning,
                             summary: "\(collector.lagRecords) records \(collector.name) has not committed, and the spill is at \(facts.status.spill.bytes * 100 / limit)% of retention_max_bytes",
                             sinceMillis: facts.nowMillis)
        }
        return nil
    }

    private mutating func transitions(to conditions: [Key: Condition], now: Int64) -> [AllegroAlert] {
        var changes: [AllegroAlert] = []
        for key in Set(active.keys).union(conditions.keys).sorted() {
            switch (active[key], conditions[key]) {
            case let (nil, condition?):
                // Names, subjects and summaries are built here from checked parts; a refusal
                // (a collector name with a control character) drops the alert, not the relay.
                guard let alert = try? AllegroAlert(alert: key.alert, subject: String(key.subject.prefix(200)), status: .firing,
                                                    severity: condition.severity, summary: condition.summary,
                                                    details: condition.details, sinceMillis: condition.sinceMillis)
                else { continue }
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
