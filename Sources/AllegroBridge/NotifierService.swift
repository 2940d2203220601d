import AllegroLog
import AllegroMessages
import AllegroPosix
import Foundation
import ServiceLifecycle
import Synchronization

/// What the notifier is doing, for `/health`.
public struct NotifierHealth: Sendable, Codable, Equatable {
    /// "starting", "idle", "sending", "waiting" (a 429 or the per-chat limit) or "failing".
    public var state = "starting"
    /// Why the relay cannot be read, while it cannot.
    public var relayProblem: String?
    /// Why Telegram does not take messages, while it does not.
    public var telegramProblem: String?
    /// Why the ledger cannot be saved (no commit meanwhile), while it cannot.
    public var ledgerProblem: String?
    public var messagesSent = 0
    /// Parts Telegram refused even as plain text, dropped after logging (never expected).
    public var messagesDropped = 0
    public var committed: UInt64 = 0
    public var relayConnected = false
}

/// Where a duty posts its health (`NotifierHealth`, `GiteaHealth`) and `/health` reads it; safe
/// from any thread.
final class HealthBoard<Value: Sendable>: Sendable {
    private let state: Mutex<Value>
    init(_ initial: Value) { state = Mutex(initial) }
    func update(_ change: (inout Value) -> Void) { state.withLock { change(&$0) } }
    var current: Value { state.withLock { $0 } }
}

typealias NotifierHealthBoard = HealthBoard<NotifierHealth>

/// The notifier duty: a durable collector of the relay (`bridge.notifier_name`) that tells a
/// Telegram chat of alerts (grouped by `NotifierPolicy`), of urgent Requests and of reports.
/// The relay's cursor is its outbox: a record is committed only once Telegram accepted every
/// message holding its news (and the ledger is saved), so a crash resends at most the message
/// in flight and loses nothing. At most one message per `telegram_min_interval_ms`; a 429 waits
/// `retry_after`; failures retry with backoff (1 s doubling to 60 s; 5 min for refusals that
/// need the configuration fixed).
struct NotifierService: Service {
    let settings: BridgeSettings
    let feed: RecordFeed
    let telegram: TelegramClient
    let ledger: NotifierLedger
    /// The relay's `/health`, when its control port is known.
    let relayHealth: RelayHealthProbe?
    let health: NotifierHealthBoard
    let log: EventLog

    static let kinds: Set<String> = [AllegroAlert.kind, "allegro.request", "allegro.report"]

    func run() async throws {
        let loaded = ledger.load()
        if let problem = loaded.problem { log.log(.warning, "ledger_set_aside", ["reason": problem]) }
        // The policy's clock is monotonic (a wall clock step must not stall or rush messages);
        // the ledger keeps wall times, converted at its edge.
        var policy = NotifierPolicy(timing: .init(groupWaitMillis: Int64(settings.groupWaitMillis),
                                                  groupIntervalMillis: Int64(settings.groupIntervalMillis),
                                                  repeatIntervalMillis: Int64(settings.repeatIntervalMillis)),
                                    ledger: Self.shifted(loaded.ledger, by: Self.nowMillis - Self.wallMillis),
                                    tellsUnknownResolutions: !loaded.found)
        let subject = relayHealth?.url ?? ""
        var rule = RelayHealthRule(subject: subject, downMillis: Int64(settings.relayDownMillis),
                                   told: loaded.ledger.groups["relay_unhealthy"]?.firing.first { $0.subject == subject })
        // A relay_unhealthy told for another address, or with the watch now off, can never
        // resolve by itself: it resolves now.
        for stale in loaded.ledger.groups["relay_unhealthy"]?.firing ?? [] where stale.subject != subject || settings.relayDownMillis == 0 {
            policy.take(stale.with(status: .resolved, summary: "no longer watched: \(stale.summary)"), sequence: nil, nowMillis: Self.nowMillis)
        }
        var nextProbeMillis: Int64 = 0
        var lastTaken: UInt64 = 0
        var commitAsked: UInt64 = 0
        var ledgerSaved = true
        var pacing = Pacing()
        defer { feed.stop() }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // Past `maxDirects` waiting, the feed is left to fill and the relay holds the rest.
            var seenThrough: UInt64 = 0
            if policy.directCount < NotifierPolicy.maxDirects {
                let drained = feed.drain()
                seenThrough = drained.seenThrough
                for item in drained.items where item.sequence > lastTaken {
                    lastTaken = item.sequence
                    take(item, into: &policy)
                }
            }
            if let relayHealth, settings.relayDownMillis > 0, Self.nowMillis >= nextProbeMillis {
                nextProbeMillis = Self.nowMillis + Int64(min(5_000, max(settings.relayDownMillis / 4, 100)))
                let (healthy, reason) = await relayHealth.probe()
                if let alert = rule.observe(healthy: healthy, reason: reason, nowMillis: Self.wallMillis) {
                    log.log(alert.status == .firing ? .warning : .info, "alert_\(alert.status.rawValue)",
                            ["alert": alert.alert, "subject": alert.subject, "summary": alert.summary])
                    policy.take(alert, sequence: nil, nowMillis: Self.nowMillis)
                }
            }
            if let outgoing = policy.due(nowMillis: Self.nowMillis) {
                guard await deliver(outgoing, pacing: &pacing) else { break }
                policy.delivered(outgoing, nowMillis: Self.nowMillis)
                ledgerSaved = false
            }
            if !ledgerSaved {
                // The cursor moves only past what the ledger on disk says was told.
                do {
                    try ledger.save(Self.shifted(policy.ledger(committed: feed.committed), by: Self.wallMillis - Self.nowMillis))
                    ledgerSaved = true
                    health.update { $0.ledgerProblem = nil }
                } catch {
                    log.log(.error, "ledger_not_saved", ["file": ledger.path, "reason": "\(error)", "effect": "no commit until it is saved"])
                    health.update { $0.ledgerProblem = "cannot save \(ledger.path): \(error)" }
                }
            }
            let safe = policy.oldestPendingSequence.map { $0 - 1 } ?? max(seenThrough, lastTaken)
            if ledgerSaved && safe > commitAsked {
                feed.commit(through: safe)
                commitAsked = safe
            }
            let relay = (feed.connected, feed.committed, feed.problem)
            health.update { health in
                health.relayConnected = relay.0
                health.committed = relay.1
                health.relayProblem = relay.2
                health.state = relay.2 == nil && health.telegramProblem == nil && health.ledgerProblem == nil ? "idle" : "failing"
            }
            // `nextDueMillis` may be Int64.min (a request waiting): compare before subtracting.
            let now = Self.nowMillis
            let wait = policy.nextDueMillis().map { $0 <= now ? 0 : min($0 - now, 50) } ?? 50
            if wait > 0 { try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(wait)) } }
        }
    }

    /// The policy's clock: monotonic milliseconds.
    static var nowMillis: Int64 { Int64(Clock.monotonicNanos / 1_000_000) }
    static var wallMillis: Int64 { Int64(Clock.wallNanos / 1_000_000) }

    /// The ledger's times moved from one clock to the other (wall for the file, monotonic for
    /// the policy): `offset` is the target clock's now minus the source's. Each is clamped to the
    /// target's now, so a damaged time can neither postpone a message nor overflow.
    static func shifted(_ ledger: NotifierPolicy.Ledger, by offset: Int64) -> NotifierPolicy.Ledger {
        var moved = ledger
        let bound = Int64(1) << 60
        let ceiling = nowMillis &+ max(offset, 0)  // the target's now: wall is ahead of monotonic
        for (name, told) in ledger.groups {
            moved.groups[name]?.lastSentMillis = min(min(max(told.lastSentMillis, -bound), bound) + offset, ceiling)
        }
        return moved
    }

    /// Reads one record's message into the policy; what cannot be read is logged and passed.
    private func take(_ item: RecordFeed.Item, into policy: inout NotifierPolicy) {
        do throws(MessageError) {
            switch item.kind {
            case AllegroAlert.kind:
                policy.take(try AllegroAlert(json: item.payload), sequence: item.sequence, nowMillis: Self.nowMillis)
            case "allegro.request":
                let request = try AllegroRequest(json: item.payload)
                if AllegroRequest.Urgency.allCases.firstIndex(of: request.urgency) ?? 0
                    >= AllegroRequest.Urgency.allCases.firstIndex(of: settings.requestUrgency) ?? 0 {
                    policy.take(html: request.telegramHTML, sequence: item.sequence)
                }
            case "allegro.report":
                let report = try AllegroReport(json: item.payload)
                switch settings.reports {
                case .all: policy.take(html: report.telegramHTML, sequence: item.sequence)
                case .daily where item.session == "allegro.daily": policy.take(html: report.telegramHTML, sequence: item.sequence)
                default: break
                }
            default:
                break
            }
        } catch {
            log.log(.warning, "record_not_understood", ["sequence": String(item.sequence), "kind": item.kind, "reason": error.description])
        }
    }

    /// When the chat may next be sent to, and how long the last failure made us wait.
    struct Pacing {
        var nextAllowedMillis: Int64 = 0
        var backoffMillis: Int64 = 1000
    }

    /// Sends every part of `outgoing`; true once all were accepted, false if shutting down.
    private func deliver(_ outgoing: NotifierPolicy.Outgoing, pacing: inout Pacing) async -> Bool {
        let parts = TelegramText.split(outgoing.html)
        var index = 0
        var asHTML = true
        health.update { $0.state = "sending" }
        while index < parts.count {
            let wait = pacing.nextAllowedMillis - Self.nowMillis
            if wait > 0 { try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(wait)) } }
            if Task.isShuttingDownGracefully || Task.isCancelled { return false }
            let text = asHTML ? parts[index] : TelegramText.plain(parts[index])
            let outcome = text.isEmpty ? .accepted : await telegram.send(text, html: asHTML)
            let now = Self.nowMillis
            pacing.nextAllowedMillis = now + Int64(settings.telegramMinIntervalMillis)
            switch outcome {
            case .accepted:
                index += 1
                asHTML = true
                pacing.backoffMillis = 1000
                health.update { $0.messagesSent += 1; $0.telegramProblem = nil; $0.state = "sending" }
            case let .retryAfter(seconds):
                pacing.nextAllowedMillis = now + Int64(seconds) * 1000
                log.log(.notice, "telegram_rate_limited", ["retry_after_s": String(seconds)])
                health.update { $0.state = "waiting" }
            case let .badMarkup(description) where asHTML:
                log.log(.warning, "telegram_refused_html", ["reason": description, "next": "resent as plain text"])
                asHTML = false
            case let .badMarkup(description), let .refused(400, description) where Self.isContentRefusal(description):
                // The text itself is refused (not the chat or the bot): plain text once, then
                // this part is dropped, logged and counted, so one bad message cannot block all.
                if asHTML {
                    log.log(.warning, "telegram_refused_message", ["reason": description, "next": "resent as plain text"])
                    asHTML = false
                } else {
                    log.log(.error, "telegram_message_dropped", ["reason": description])
                    health.update { $0.messagesDropped += 1 }
                    index += 1
                    asHTML = true
                }
            case let .refused(status, description):
                // The chat or the bot is refused: nothing is dropped; it waits for the configuration.
                fail(&pacing, now: now, maxMillis: 300_000, "Telegram refused (\(status)): \(description); check bridge.telegram_chat_id and the bot token")
            case let .unavailable(reason):
                fail(&pacing, now: now, maxMillis: 60_000, "Telegram unavailable: \(reason)")
            }
        }
        return true
    }

    /// Telegram's answers that refuse a message's text, as its Bot API words them.
    static func isContentRefusal(_ description: String) -> Bool {
        let text = description.lowercased()
        return ["message is too long", "message text is empty", "text must be non-empty", "can't parse entities"].contains { text.contains($0) }
    }

    private func fail(_ pacing: inout Pacing, now: Int64, maxMillis: Int64, _ problem: String) {
        log.log(.warning, "telegram_send_failed", ["reason": problem, "retry_in_ms": String(pacing.backoffMillis)])
        health.update { $0.state = "failing"; $0.telegramProblem = problem }
        pacing.nextAllowedMillis = now + pacing.backoffMillis
        pacing.backoffMillis = min(pacing.backoffMillis * 2, maxMillis)
    }
}
