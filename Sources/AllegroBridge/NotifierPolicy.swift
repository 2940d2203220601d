import AllegroMessages

/// What the notifier tells Telegram and when, as a state machine apart from I/O (Prometheus
/// Alertmanager's grouping): alerts are grouped by name and keyed by subject; the same key
/// firing again is one alert. A new group is told after `groupWait`; a group that changed is
/// told again no sooner than `groupInterval` after its last message; an unchanged firing group
/// is reminded after `repeatInterval`; a resolved alert is told once. Requests and reports are
/// told one message each, in stream order, before any group that is due.
///
/// It also knows the oldest record whose news is not yet told: the notifier commits the
/// relay's cursor just below it, so the cursor is the outbox.
public struct NotifierPolicy: Sendable {
    public struct Timing: Sendable, Equatable {
        public var groupWaitMillis: Int64
        public var groupIntervalMillis: Int64
        public var repeatIntervalMillis: Int64

        public init(groupWaitMillis: Int64, groupIntervalMillis: Int64, repeatIntervalMillis: Int64) {
            self.groupWaitMillis = groupWaitMillis
            self.groupIntervalMillis = groupIntervalMillis
            self.repeatIntervalMillis = repeatIntervalMillis
        }
    }

    /// One message to send (perhaps in several parts), and what it settles once delivered.
    public struct Outgoing: Sendable, Equatable {
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
        var firstPendingSequence: UInt64?
        var createdMillis: Int64
        var lastSentMillis: Int64?
        /// The last record applied to this group.
        var lastSequence: UInt64?

        var untoldFiring: [String] { firing.keys.filter { told[$0] == nil }.sorted() }
        var hasNews: Bool { !resolved.isEmpty || firing.keys.contains { told[$0] == nil } }
    }

    /// Most subjects a group tracks; beyond it new ones are counted, not kept (memory is bounded
    /// whatever the stream holds).
    public static let maxSubjectsPerGroup = 10_000
    public static let maxGroups = 1_000
    /// A group changing more alerts than this at once is told as a list of subjects.
    static let detailedLines = 20

    public let timing: Timing
    private(set) var groups: [String: Group] = [:]
    private var directs: [(sequence: UInt64, html: String)] = []
    private var groupsThrough: [String: UInt64]
    private var directsThrough: UInt64
    /// Alerts not tracked because a bound was reached (told in the next message of the group, or logged).
    public private(set) var untracked = 0

    public init(timing: Timing, ledger: Ledger = Ledger()) {
        self.timing = timing
        groupsThrough = ledger.groupsThrough
        directsThrough = ledger.directsThrough
        for (name, state) in ledger.groups where !state.firing.isEmpty {
            var group = Group(createdMillis: state.lastSentMillis, lastSentMillis: state.lastSentMillis)
            for alert in state.firing {
                group.firing[alert.subject] = alert
                group.told[alert.subject] = alert
            }
            groups[name] = group
        }
    }

    // MARK: Taking records

    /// `sequence`: the record it came in; nil for an alert the notifier raised itself (it holds
    /// no cursor back).
    public mutating func take(_ alert: AllegroAlert, sequence: UInt64?, nowMillis: Int64) {
        if let sequence, sequence <= groupsThrough[alert.alert] ?? 0 { return }  // told before a restart
        if groups[alert.alert] == nil {
            guard groups.count < Self.maxGroups else { untracked += 1; return }
            groups[alert.alert] = Group(createdMillis: nowMillis)
        }
        guard var group = groups[alert.alert] else { return }
        if let sequence { group.lastSequence = max(group.lastSequence ?? 0, sequence) }
        switch alert.status {
        case .firing:
            if group.firing[alert.subject] != nil {  // the same alert again: nothing new
                groups[alert.alert] = group
                return
            }
            guard group.firing.count < Self.maxSubjectsPerGroup else { untracked += 1; return }
            group.firing[alert.subject] = alert
            group.resolved[alert.subject] = nil
        case .resolved:
            let wasFiring = group.firing.removeValue(forKey: alert.subject) != nil
            let wasTold = group.told[alert.subject] != nil
            // Told once, and only of an alert this notifier saw fire (told, or waiting to be):
            // a resolution repeated, or of an alert it never saw, is nothing new (Alertmanager
            // likewise tells no resolution of an alert it never told).
            guard wasFiring || wasTold else {
                groups[alert.alert] = !group.hasNews && group.firing.isEmpty && group.lastSentMillis == nil ? nil : group
                return
            }
            guard group.resolved.count < Self.maxSubjectsPerGroup else { untracked += 1; return }
            group.resolved[alert.subject] = alert
        }
        if !group.hasNews && group.firing.isEmpty {
            groups[alert.alert] = nil
            return
        }
        if !group.hasNews {
            // Back to what was told (a told alert resolved and fired again): nothing owed.
            group.firstPendingSequence = nil
        } else if let sequence {
            group.firstPendingSequence = min(group.firstPendingSequence ?? sequence, sequence)
        }
        groups[alert.alert] = group
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
            guard let last = group.lastSentMillis else { return group.createdMillis + timing.groupWaitMillis }
            return last + timing.groupIntervalMillis
        }
        if !group.firing.isEmpty, let last = group.lastSentMillis { return last + timing.repeatIntervalMillis }
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

    /// When something next falls due (for sleeping until then).
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
            group.firstPendingSequence = nil
            group.lastSentMillis = nowMillis
            if let last = group.lastSequence { groupsThrough[name] = max(groupsThrough[name] ?? 0, last) }
            groups[name] = group.firing.isEmpty ? nil : group
            untracked = 0
        }
    }

    /// What the ledger keeps (`NotifierLedger`): what every group has told and still fires, and
    /// the marks of records told above `committed` (the relay's confirmed cursor; records at or
    /// below it never come again, so their marks are dropped and the ledger stays small).
    public func ledger(committed: UInt64) -> Ledger {
        var told: [String: Told] = [:]
        for (name, group) in groups {
            guard let last = group.lastSentMillis else { continue }
            let firing = group.told.keys.sorted().compactMap { group.told[$0] }
            if !firing.isEmpty { told[name] = Told(firing: firing, lastSentMillis: last) }
        }
        return Ledger(groups: told, groupsThrough: groupsThrough.filter { $0.value > committed },
                      directsThrough: directsThrough > committed ? directsThrough : 0)
    }

    // MARK: Rendering

    func render(_ name: String, _ group: Group) -> String {
        let fresh = group.untoldFiring.compactMap { group.firing[$0] }
        let resolved = group.resolved.keys.sorted().compactMap { group.resolved[$0] }
        let still = group.firing.keys.filter { group.told[$0] != nil }.sorted().compactMap { group.firing[$0] }
        let severity = (fresh + still).map(\.severity)
        let mark = severity.contains(.critical) ? "🔴" : severity.contains(.warning) ? "🟠" : severity.isEmpty ? "✅" : "🔵"
        var counts: [String] = []
        if !fresh.isEmpty { counts.append("\(fresh.count) new") }
        if !still.isEmpty { counts.append("\(still.count) still firing") }
        if !resolved.isEmpty { counts.append("\(resolved.count) resolved") }
        if untracked > 0 { counts.append("\(untracked) more not tracked") }
        var lines = ["\(mark) <b>\(TelegramHTML.escape(name))</b>: \(counts.joined(separator: ", "))"]
        func section(_ title: String, _ alerts: [AllegroAlert]) {
            guard !alerts.isEmpty else { return }
            lines.append("<b>\(title)</b>")
            if alerts.count <= Self.detailedLines {
                lines += alerts.map { "• <b>\(TelegramHTML.escape($0.subject))</b>: \(TelegramHTML.escape(Self.shortened($0.summary)))" }
            } else {
                lines.append("for example <b>\(TelegramHTML.escape(alerts[0].subject))</b>: \(TelegramHTML.escape(Self.shortened(alerts[0].summary)))")
                // Several lines, so that a long list splits between subjects, never inside one.
                var line = ""
                for subject in alerts.map({ TelegramHTML.escape($0.subject) }) {
                    if !line.isEmpty && line.utf16.count + subject.utf16.count > 1000 {
                        lines.append(line + ",")
                        line = ""
                    }
                    line += (line.isEmpty ? "" : ", ") + subject
                }
                if !line.isEmpty { lines.append(line) }
            }
        }
        section("Firing", fresh)
        section(fresh.isEmpty && resolved.isEmpty ? "Still firing" : "Still firing (told before)", still)
        section("Resolved", resolved)
        return lines.joined(separator: "\n")
    }

    static func shortened(_ text: String) -> String {
        text.unicodeScalars.count <= 300 ? text : String(String.UnicodeScalarView(text.unicodeScalars.prefix(299))) + "…"
    }
}
