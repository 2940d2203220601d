import AllegroMessages
import AllegroPosix
import Foundation

/// What the notifier has told Telegram, in `DATA/notifier.json`: by group, the alerts told and
/// still firing and the last record told; the last request or report told. Written after each
/// delivered message and before its records are committed, so a restarted notifier skips what
/// it told above the committed cursor, and reminds, resolves and de-duplicates as if it had
/// never stopped. Alerts are kept in their canonical JSON and read back through
/// `AllegroAlert(json:)`. The file is replaced durably (fsync'd, renamed, directory fsync'd)
/// before the cursor moves. A missing or damaged file (set aside) leaves the notifier not
/// knowing what it told: it then tells resolutions of alerts it never saw fire, and may tell
/// some alerts again.
struct NotifierLedger: Sendable {
    let path: String

    /// The ledger, whether a file was found (none, or one set aside: what was told is unknown),
    /// and what was wrong with it.
    func load() -> (ledger: NotifierPolicy.Ledger, found: Bool, problem: String?) {
        guard let data = FileManager.default.contents(atPath: path) else { return (NotifierPolicy.Ledger(), false, nil) }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              object["version"] as? Int == 1, let groups = object["groups"] as? [String: Any] else {
            let aside = path + ".damaged"
            try? FileManager.default.removeItem(atPath: aside)
            try? FileManager.default.moveItem(atPath: path, toPath: aside)
            return (NotifierPolicy.Ledger(), false, "\(path) is not a notifier ledger; set aside as \(aside)")
        }
        var ledger = NotifierPolicy.Ledger()
        for (name, value) in groups {
            guard let group = value as? [String: Any] else { continue }
            if let through = (group["through"] as? NSNumber)?.uint64Value, through > 0 { ledger.groupsThrough[name] = through }
            guard let last = (group["last_sent_ms"] as? NSNumber)?.int64Value, let firing = group["firing"] as? [String] else { continue }
            ledger.groups[name] = NotifierPolicy.Told(firing: firing.compactMap { try? AllegroAlert(json: $0) }, lastSentMillis: last)
        }
        ledger.directsThrough = (object["directs_through"] as? NSNumber)?.uint64Value ?? 0
        return (ledger, true, nil)
    }

    func save(_ ledger: NotifierPolicy.Ledger) throws {
        var groups: [String: Any] = [:]
        for name in Set(ledger.groups.keys).union(ledger.groupsThrough.keys) {
            var group: [String: Any] = ["through": ledger.groupsThrough[name] ?? 0]
            if let told = ledger.groups[name] {
                group["last_sent_ms"] = told.lastSentMillis
                group["firing"] = told.firing.map(\.json)
            }
            groups[name] = group
        }
        let object: [String: Any] = ["version": 1, "groups": groups, "directs_through": ledger.directsThrough]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        try File.replaceDurably(path, with: Array(data))
    }
}
