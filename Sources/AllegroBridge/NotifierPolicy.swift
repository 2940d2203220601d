import AllegroMessages

/// What the notifier tells Telegram and when, as a state machine apart from I/O (Prometheus
/// Alertmanager's grouping): alerts are grouped by name and keyed by subject; the same key
/// firing again is one alert. A new group is told after `groupWait`; a group that changed is
/// told again no sooner than `groupInterval` after its last message; an unchanged firing group
/// is reminded after `repeatInterval`; a resolved alert is told once. Requests and reports are
/// told one message each, in stream order, before any group that is due.
///
/// It also knows the oldest record whose news is not yet told: the notifier commits the
/// relay's cursor just below it, so the cursor is the outbox. Times are milliseconds of one
/// clock the caller chooses (the notifier's is monotonic); memory is bounded (`maxGroups`,
/// `maxSubjectsPerGroup`, `maxDirects`): alerts past a bound are counted, and the count is told.
public struct NotifierPolicy: Sendable {
    /// Alertmanager's three timings, in milliseconds.
    public struct Timing: Sendable, Equatable {
        /// A new group waits this long for more alerts before its first message.
        public var groupWaitMillis: Int64
        /// A changed group is told again no sooner than this after its last message.
        public var groupIntervalMillis: Int64
        /// An unchanged group still firing is told again after this.
        public var repeatIntervalMillis: Int64

        public init(groupWaitMillis: Int64, groupIntervalMillis: Int64, repeatIntervalMillis: Int64) {
            self.groupWaitMillis = groupWaitMillis
            self.groupIntervalMillis = groupIntervalMillis
            self.repeatIntervalMillis = repeatIntervalMillis
        }
    }

    /// One message to send (perhaps in several parts), and what it settles once delivered.
    public struct Outgoing: Sendable, Equatable {
        /// A group's news, or one request or report (by its record).
        public enum Source: Sendable, Equatable {
            case group(String)
            case direct(sequence: UInt64)
        }

        public var source: Source
        /// Telegram HTML.
        public var html: String
    }

    /// What a group's last delivered message told, kept across restarts (`NotifierLedger`).
    public struct Told: Sendable, Equatable {
        public var firing: [AllegroAlert]
        public var lastSentMillis: Int64

        public init(firing: [AllegroAlert], lastSentMillis: Int64) {
            self.firing = firing
            self.lastSentMillis = lastSentMillis
        }
    }

    /// Everything the ledger keeps: what each group told, and through which record each group
    /// (and the requests and reports) has been told. Records above the committed cursor come
    /// again after a restart; those at or below these marks are already told and are skipped.
    public struct Ledger: Sendable, Equatable {
        public var groups: [String: Told] = [:]
        public var groupsThrough: [String: UInt64] = [:]
        public var directsThrough: UInt64 = 0

        public init(groups: [String: Told] = [:], groupsThrough: [String: UInt64] = [:], directsThrough: UInt64 = 0) {
            self.groups = groups
            self.groupsThrough = groupsThrough
            self.directsThrough = directsThrough
        }
    }

    struct Group: Sendable {
        /// Firing now, by subject; told or not.
        var firing: [String: AllegroAlert] = [:]
        /// The alerts firing as the last delivered message told them (changed only by delivery).
        var told: [String: AllegroAlert] = [:]
        /// Resolved since the last message, by subject.
        var resolved: [String: AllegroAlert] = [:]
        /// Firing subjects not in `told` (kept as a count: `hasNews` runs on every pass).
        var untold = 0
        /// Alerts past `maxSubjectsPerGroup` since the last message: counted and told.
        var untracked = 0
        var firstPendingSequence: UInt64?
        var createdMillis: Int64
        var lastSentMillis: Int64?
        /// The last record applied to this group.
        var lastSequence: UInt64?

        var hasNews: Bool { !resolved.isEmpty || untold > 0 || untracked > 0 }
    }

    /// Bounds on what is kept: subjects per group, groups, requests and reports waiting.
    public static let maxSubjectsPerGroup = 2_000
    public static let maxGroups = 200
    public static let maxDirects = 1_000
    /// Where alerts of groups past `maxGroups` are counted.
    static let overflowGroup = "(other alerts)"
    /// A group changing more alerts than this at once is told as a list of subjects.
    static let detailedLines = 20

    public let timing: Timing
    private(set) var groups: [String: Group] = [:]
    private var directs: [(sequence: UInt64, html: String)] = []
    private var groupsThrough: [String: UInt64]
    private var directsThrough: UInt64
    /// Tell resolutions of alerts never seen firing (when the ledger was lost, what was told
    /// before is unknown: better told twice than never).
    private let tellsUnknownResolutions: Bool

    public init(timing: Timing, ledger: Ledger = Ledger(), tellsUnknownResolutions: Bool = false) {
        self.timing = timing
        self.tellsUnknownResolutions = tellsUnknownResolutions
        groupsThrough = ledger.groupsThrough
        directsThrough = ledger.directsThrough
        for (name, state) in ledger.groups.prefix(Self.maxGroups) where !state.firing.isEmpty {
            var group = Group(createdMillis: state.lastSentMillis, lastSentMillis: state.lastSentMillis)
            for alert in state.firing.prefix(Self.maxSubjectsPerGroup) {
                group.firing[alert.subject] = alert
                group.told[alert.subject] = alert
            }
            groups[name] = group
        }
    }

    /// Requests and reports waiting; the notifier stops reading the stream at `maxDirects`.
    public var directCount: Int { directs.count }

    // MARK: Taking records

    /// `sequence`: the record it came in; nil for an alert the notifier raised itself (it holds
    /// no cursor back).
    public mutating func take(_ alert: AllegroAlert, sequence: UInt64?, nowMillis: Int64) {
        if let sequence, sequence <= groupsThrough[alert.alert] ?? 0 { return }  // told before a restart
        var name = alert.alert
        if groups[name] == nil && groups.count >= Self.maxGroups { name = Self.overflowGroup }
        var group = groups[name] ?? Group(createdMillis: nowMillis)
        if let sequence { group.lastSequence = max(group.lastSequence ?? 0, sequence) }
        if name == Self.overflowGroup {
            group.untracked += 1
        } else {
            switch alert.status {
            case .firing:
                if group.firing[alert.subject] == nil {
                    if group.firing.count >= Self.maxSubjectsPerGroup {
                        group.untracked += 1
                    } else {
                        group.firing[alert.subject] = alert
                        group.resolved[alert.subject] = nil
                        if group.told[alert.subject] == nil { group.untold += 1 }
                    }
                }
            case .resolved:
                let wasFiring = group.firing.removeValue(forKey: alert.subject) != nil
                if wasFiring && group.told[alert.subject] == nil { group.untold -= 1 }
                // Told once, and only of an alert this notifier saw fire (told, or waiting to
                // be): a resolution repeated, or of an alert it never saw, is nothing new
                // (Alertmanager likewise tells no resolution of an alert it never told).
                if wasFiring || group.told[alert.subject] != nil || (tellsUnknownResolutions && group.resolved[alert.subject] == nil) {
                    if group.resolved.count >= Self.maxSubjectsPerGroup { group.untracked += 1 } else { group.resolved[alert.subject] = alert }
                }
            }
        }
        assert(group.untold >= 0 && group.untold <= group.firing.count, "untold counts firing subjects not told")
        if !group.hasNews && group.firing.isEmpty && group.lastSentMillis == nil {
            groups[name] = nil
            return
        }
        if !group.hasNews {
            // Back to what was told (a told alert resolved and fired again): nothing owed.
            group.firstPendingSequence = nil
        } else if let sequence {
            group.firstPendingSequence = min(group.firstPendingSequence ?? sequence, sequence)
        }
        groups[name] = group
    }

    /// A request or report, told as it is.
    public mutating func take(html: String, sequence: UInt64) {
        guard sequence > directsThrough else { return }  // told before a restart
        directs.append((sequence, html))
    }

    // MARK: Deciding

    /// The oldest record whose news is not yet delivered (nil: all told).
    public var oldestPendingSequence: UInt64? {
        let grouped = groups.values.compactMap(\.firstPendingSequence).min()
        let direct = directs.first?.sequence
        switch (grouped, direct) {
        case let (a?, b?): return min(a, b)
        case let (a?, nil): return a
        case let (nil, b): return b
        }
    }

    /// When a group is next due (nil: never, until something changes).
    private func dueMillis(_ group: Group) -> Int64? {
        if group.hasNews {
            guard let last = group.lastSentMillis else { return group.createdMillis &+ timing.groupWaitMillis }
            return last &+ timing.groupIntervalMillis
        }
        if !group.firing.isEmpty, let last = group.lastSentMillis { return last &+ timing.repeatIntervalMillis }
        return nil
    }

    /// The next message due at `nowMillis`, if any: a waiting request or report first, then the
    /// group due longest ago.
    public func due(nowMillis: Int64) -> Outgoing? {
        if let direct = directs.first { return Outgoing(source: .direct(sequence: direct.sequence), html: direct.html) }
        let ready = groups.compactMap { name, group in dueMillis(group).map { (name, $0) } }
            .filter { $0.1 <= nowMillis }
            .min { ($0.1, $0.0) < ($1.1, $1.0) }
        guard let (name, _) = ready, let group = groups[name] else { return nil }
        return Outgoing(source: .group(name), html: render(name, group))
    }

    /// When something next falls due (for sleeping until then); `Int64.min` while a request or
    /// report waits.
    public func nextDueMillis() -> Int64? {
        if !directs.isEmpty { return Int64.min }
        return groups.values.compactMap(dueMillis).min()
    }

    /// Telegram accepted `outgoing`: what it told is now told.
    public mutating func delivered(_ outgoing: Outgoing, nowMillis: Int64) {
        switch outgoing.source {
        case let .direct(sequence):
            if let index = directs.firstIndex(where: { $0.sequence == sequence }) { directs.remove(at: index) }
            directsThrough = max(directsThrough, sequence)
        case let .group(name):
            guard var group = groups[name] else { return }
            group.told = group.firing
            group.resolved = [:]
            group.untold = 0
            group.untracked = 0
            group.firstPendingSequence = nil
            group.lastSentMillis = nowMillis
            if let last = group.lastSequence { groupsThrough[name] = max(groupsThrough[name] ?? 0, last) }
            groups[name] = group.firing.isEmpty ? nil : group
        }
    }

    /// What the ledger keeps (`NotifierLedger`): what every group has told and still fires, and
    /// the marks of records told above `committed` (the relay's confirmed cursor; records at or
    /// below it never come again, so their marks are dropped and the ledger stays small).
    public func ledger(committed: UInt64) -> Ledger {
        var told: [String: Told] = [:]
        for (name, group) in groups {
            guard let last = group.lastSentMillis, !group.told.isEmpty else { continue }
            told[name] = Told(firing: group.told.keys.sorted().compactMap { group.told[$0] }, lastSentMillis: last)
        }
        return Ledger(groups: told, groupsThrough: groupsThrough.filter { $0.value > committed },
                      directsThrough: directsThrough > committed ? directsThrough : 0)
    }

    // MARK: Rendering

    func render(_ name: String, _ group: Group) -> String {
        let fresh = group.firing.keys.filter { group.told[$0] == nil }.sorted().compactMap { group.firing[$0] }
        let resolved = group.resolved.keys.sorted().compactMap { group.resolved[$0] }
        let still = group.firing.keys.filter { group.told[$0] != nil }.sorted().compactMap { group.firing[$0] }
        let severity = (fresh + still).map(\.severity)
        let mark = severity.contains(.critical) ? "🔴" : severity.contains(.warning) ? "🟠" : severity.isEmpty ? "✅" : "🔵"
        var counts: [String] = []
        if !fresh.isEmpty { counts.append("\(fresh.count) new") }
        if !still.isEmpty { counts.append("\(still.count) still firing") }
        if !resolved.isEmpty { counts.append("\(resolved.count) resolved") }
        if group.untracked > 0 { counts.append("\(group.untracked) more not tracked (too many to keep)") }
        var lines = ["\(mark) <b>\(TelegramHTML.escape(name))</b>: \(counts.joined(separator: ", "))"]
        func section(_ title: String, _ alerts: [AllegroAlert], listAll: Bool) {
            guard !alerts.isEmpty else { return }
            lines.append("<b>\(title)</b>")
            if alerts.count <= Self.detailedLines {
                lines += alerts.map { "• <b>\(TelegramHTML.escape($0.subject))</b>: \(TelegramHTML.escape(Self.shortened($0.summary)))" }
                return
            }
            lines.append("for example <b>\(TelegramHTML.escape(alerts[0].subject))</b>: \(TelegramHTML.escape(Self.shortened(alerts[0].summary)))")
            let shown = listAll ? alerts : Array(alerts.prefix(Self.detailedLines))
            // Several lines, so that a long list splits between subjects, never inside one.
            var line = ""
            for subject in shown.map({ TelegramHTML.escape($0.subject) }) {
                if !line.isEmpty && line.utf16.count + subject.utf16.count > 1000 {
                    lines.append(line + ",")
                    line = ""
                }
                line += (line.isEmpty ? "" : ", ") + subject
            }
            if !listAll { line += ", and \(alerts.count - shown.count) more" }
            lines.append(line)
        }
        // What is news is listed whole; what was told before is only recalled.
        section("Firing", fresh, listAll: true)
        let reminder = fresh.isEmpty && resolved.isEmpty
        section(reminder ? "Still firing" : "Still firing (told before)", still, listAll: reminder)
        section("Resolved", resolved, listAll: true)
        return lines.joined(separator: "\n")
    }

    static func shortened(_ text: String) -> String {
        text.unicodeScalars.count <= 300 ? text : String(String.UnicodeScalarView(text.unicodeScalars.prefix(299))) + "…"
    }
}
