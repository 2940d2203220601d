import Foundation
import AllegroMessages
import AllegroPosix

/// Everything `allegro bridge` runs with (the `bridge:` section of the configuration; keys in
/// config/README.md). The embedded defaults run a bridge with its `/health` and no duty: the
/// notifier starts once a Telegram chat is named.
public struct BridgeSettings: Sendable, Equatable {
    /// `/health`, HOST:PORT; nil: no HTTP port.
    public var http: String? = "127.0.0.1:7402"
    /// The relay to read, HOST:PORT; empty: the relay's own `listen` on this host.
    public var relay = ""
    /// The relay's control port, for its `/health`; empty: the relay's own `http` setting.
    public var relayHTTP = ""
    /// After the relay's `/health` has failed this long, the notifier says so itself
    /// (`relay_unhealthy`); 0: never.
    public var relayDownMillis = 60_000
    /// The collector token to present to the relay (the relay's `collector_token`).
    public var collectorToken: String?
    /// The bridge's own small state (what the notifier last told Telegram).
    public var dataDirectory = "allegro-bridge"
    /// The notifier's durable collector name on the relay (in its `durable_collectors`).
    public var notifierName = "notifier"
    public var telegramAPI = "https://api.telegram.org"
    /// The chat alerts go to; empty: no notifier.
    public var telegramChatID = ""
    /// A file holding the bot token (else `ALLEGRO_TELEGRAM_BOT_TOKEN`); never a setting itself.
    public var telegramTokenFile = ""
    /// Least time between two messages to the chat (Telegram allows about one a second).
    public var telegramMinIntervalMillis = 1_000
    /// Alertmanager's timings: a new group waits `groupWait` for more alerts; a changed group
    /// is told again no sooner than `groupInterval` after its last message; an unchanged firing
    /// group is told again after `repeatInterval`.
    public var groupWaitMillis = 30_000
    public var groupIntervalMillis = 300_000
    public var repeatIntervalMillis = 14_400_000
    /// Requests of this urgency or above go to Telegram.
    public var requestUrgency = AllegroRequest.Urgency.high
    public var reports = ReportChoice.daily

    public enum ReportChoice: String, Sendable, CaseIterable {
        /// Only the relay's daily report (session `allegro.daily`).
        case daily
        case all
        case none
    }

    public init() {}

    /// A setting that cannot work, naming its key.
    public struct Invalid: Error, Equatable, Sendable {
        public var key: String
        public var value: String
        public var allowed: String
    }

    public func validate() throws(Invalid) {
        if let http, (try? AllegroPosix.SocketAddress(parsing: http)) == nil {
            throw Invalid(key: "bridge.http", value: http, allowed: "HOST:PORT with a numeric address, or off")
        }
        if !relay.isEmpty, (try? AllegroPosix.SocketAddress(parsing: relay)) == nil {
            throw Invalid(key: "bridge.relay", value: relay, allowed: "HOST:PORT with a numeric address, or empty for the relay's listen address")
        }
        if !relayHTTP.isEmpty, (try? AllegroPosix.SocketAddress(parsing: relayHTTP)) == nil {
            throw Invalid(key: "bridge.relay_http", value: relayHTTP, allowed: "HOST:PORT with a numeric address, or empty for the relay's http setting")
        }
        try check("bridge.relay_down_ms", relayDownMillis, 0 ... 86_400_000)
        guard !notifierName.isEmpty, notifierName.utf8.count <= 255 else {
            throw Invalid(key: "bridge.notifier_name", value: "\"\(notifierName)\"", allowed: "a durable collector name of 1 ... 255 bytes")
        }
        guard Self.isSafeBaseURL(telegramAPI) else {
            throw Invalid(key: "bridge.telegram_api", value: telegramAPI,
                          allowed: "an https:// URL (plain http only to a loopback address, for a local stand-in), since the bot token travels in it")
        }
        if !telegramChatID.isEmpty, telegramChatID.contains(where: { $0 == " " || $0 == "/" || $0 == "\n" }) {
            throw Invalid(key: "bridge.telegram_chat_id", value: telegramChatID, allowed: "a chat id (-100123...) or @channelname")
        }
        try check("bridge.telegram_min_interval_ms", telegramMinIntervalMillis, 0 ... 3_600_000)
        try check("bridge.group_wait_ms", groupWaitMillis, 0 ... 86_400_000)
        try check("bridge.group_interval_ms", groupIntervalMillis, 1 ... 86_400_000)
        try check("bridge.repeat_interval_ms", repeatIntervalMillis, 1 ... 30 * 86_400_000)
    }

    /// An `https` URL, or plain `http` to a loopback host only (`127.x.x.x`, `::1`, exactly
    /// `localhost`), with no user or password in it: what a secret may travel to.
    public static func isSafeBaseURL(_ text: String) -> Bool {
        guard let url = URLComponents(string: text), let host = url.host, !host.isEmpty, url.user == nil, url.password == nil
        else { return false }
        switch url.scheme?.lowercased() {
        case "https": return true
        case "http":
            if host == "localhost" || host == "::1" || host == "[::1]" { return true }
            let octets = host.split(separator: ".", omittingEmptySubsequences: false)
            return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
        default: return false
        }
    }

    private func check(_ key: String, _ value: Int, _ range: ClosedRange<Int>) throws(Invalid) {
        guard range.contains(value) else { throw Invalid(key: key, value: String(value), allowed: "\(range.lowerBound) ... \(range.upperBound)") }
    }
}
