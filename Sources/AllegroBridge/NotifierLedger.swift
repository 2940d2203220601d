import AllegroMessages
import Foundation

/// What the notifier has told Telegram and still fires, by group, in `DATA/notifier.json`:
/// written after each delivered message and before its records are committed, so a restarted
/// notifier reminds, resolves and de-duplicates as if it had never stopped. Alerts are kept in
/// their canonical JSON and read back through `AllegroAlert(json:)`; a damaged file is set
/// aside (the notifier then tells some alerts again, and loses nothing).
struct NotifierLedger: Sendable {
    let path: String

    func load() -> (told: [String: NotifierPolicy.Told], problem: String?) {
        guard let data = FileManager.default.contents(atPath: path) else { return ([:], nil) }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let groups = object["groups"] as? [String: Any] else {
            let aside = path + ".damaged"
            try? FileManager.default.removeItem(atPath: aside)
            try? FileManager.default.moveItem(atPath: path, toPath: aside)
            return ([:], "\(path) is not a notifier ledger; set aside as \(aside)")
        }
        var told: [String: NotifierPolicy.Told] = [:]
        for (name, value) in groups {
            guard let group = value as? [String: Any], let last = (group["last_sent_ms"] as? NSNumber)?.int64Value,
                  let firing = group["firing"] as? [String] else { continue }
            let alerts = firing.compactMap { try? AllegroAlert(json: $0) }
            told[name] = NotifierPolicy.Told(firing: alerts, lastSentMillis: last)
        }
        return (told, nil)
    }

    func save(_ told: [String: NotifierPolicy.Told]) throws {
        var groups: [String: Any] = [:]
        for (name, state) in told {
            groups[name] = ["last_sent_ms": state.lastSentMillis, "firing": state.firing.map(\.json)] as [String: Any]
        }
        let data = try JSONSerialization.data(withJSONObject: ["version": 1, "groups": groups], options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
