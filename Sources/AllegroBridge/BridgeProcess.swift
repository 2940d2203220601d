import AllegroApproval
import AllegroClient
import AllegroGitea
import AllegroLog
import AllegroPosix
import AllegroWire
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// `allegro bridge` as a process: its duties (today the notifier) and its HTTP port, as one
/// swift-service-lifecycle group that SIGTERM and SIGINT stop gracefully.
///
/// - `GET /health`: 200 `{"status":"ok","notifier":{...},"gitea":{...}}` while every duty
///   works (a duty that is off is absent); 503 with the same body and `"status":"failing"` while
///   the relay cannot be read, Telegram does not take messages, or Gitea cannot be polled.
public enum BridgeProcess {
    /// Where the notifier's bot token comes from when no file is named.
    public static let tokenVariable = "ALLEGRO_TELEGRAM_BOT_TOKEN"

    /// The bot token from `bridge.telegram_token_file` or the environment; a message naming the
    /// file or the variable when neither gives one.
    public static func botToken(_ settings: BridgeSettings, environment: [String: String]) throws(BridgeStartError) -> String {
        if !settings.telegramTokenFile.isEmpty {
            guard let data = FileManager.default.contents(atPath: settings.telegramTokenFile) else {
                throw BridgeStartError("cannot read bridge.telegram_token_file \(settings.telegramTokenFile)")
            }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let mode = ((try? FileManager.default.attributesOfItem(atPath: settings.telegramTokenFile))?[.posixPermissions] as? NSNumber)?.intValue ?? 0
            guard mode & 0o077 == 0 else {
                throw BridgeStartError("bridge.telegram_token_file \(settings.telegramTokenFile) can be read by others (mode \(String(mode, radix: 8))): chmod 600 it")
            }
            guard Self.isPlausibleToken(token) else {
                throw BridgeStartError("bridge.telegram_token_file \(settings.telegramTokenFile) does not hold a bot token (one line, like 123456:ABC...)")
            }
            return token
        }
        guard let token = environment[tokenVariable]?.trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            throw BridgeStartError("bridge.telegram_chat_id is set, so the notifier needs a bot token: set \(tokenVariable) or bridge.telegram_token_file")
        }
        guard Self.isPlausibleToken(token) else { throw BridgeStartError("\(tokenVariable) does not hold a bot token (like 123456:ABC...)") }
        return token
    }

    /// The Bot API's token shape, `123456:ABC-def_...`: digits, a colon, then letters, digits,
    /// `-` and `_` (nothing a URL or a log line would alter or hide).
    static func isPlausibleToken(_ token: String) -> Bool {
        let parts = token.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        return token.utf8.count <= 256 && parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty
            && parts[0].utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            && parts[1].unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0" ... "9").contains($0) || $0 == "-" || $0 == "_") }
    }

    /// Runs until a stop signal (returns normally) or a failure (throws).
    /// `relayHTTP`: the relay's control port (HOST:PORT) for its `/health`, if known.
    /// `gitea`: the Gitea duty's settings (off with no URL); `producerToken`: what the bridge
    /// presents to publish on the relay.
    public static func run(_ settings: BridgeSettings, relay: AllegroPosix.SocketAddress, relayHTTP: String?, token: String?,
                           gitea: GiteaSettings = GiteaSettings(), hermes: HermesSettings = HermesSettings(), producerToken: String? = nil,
                           log: EventLog) async throws {
        var services: [any Service] = []
        var httpClient: HTTPClient?
        var giteaHealth: GiteaHealthBoard?
        var commandRoutes: CommandRoutes?
        var webhook: GiteaWebhook?
        // The duties that talk to the outside world share one outbox (what they put on the
        // stream) and one nonce store (Timmy's approvals are accepted once, whichever duty).
        var outbox: (store: BridgeStore, publisher: OutboxPublisher)?
        var nonces: SQLiteNonceStore?
        if gitea.isOn || hermes.isOn {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
            let store = try BridgeStore(path: settings.dataDirectory + "/bridge.sqlite")
            outbox = (store, OutboxPublisher(store: store, relay: relay, token: producerToken,
                                             producerID: gitea.isOn ? "allegro-bridge-gitea" : "allegro-bridge-hermes", log: log))
            if !gitea.allowedSigners.isEmpty || !hermes.allowedSigners.isEmpty {
                nonces = try SQLiteNonceStore(path: settings.dataDirectory + "/approvals.sqlite")
            }
        }
        if gitea.isOn, let (store, publisher) = outbox {
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
            httpClient = client
            let board = GiteaHealthBoard(GiteaHealth())
            giteaHealth = board
            let giteaClient = GiteaClient(http: client, url: gitea.url, token: gitea.token ?? "")
            var gate: ApprovalGate?
            if !gitea.allowedSigners.isEmpty, let nonces {
                gate = ApprovalGate(allowedSignersPath: gitea.allowedSigners, nonces: nonces, store: store, publisher: publisher, log: log)
            }
            var giteaCommands = GiteaCommands(settings: gitea, client: giteaClient, store: store, publisher: publisher, gate: gate, log: log)
            let environment = ProcessInfo.processInfo.environment
            if environment["ALLEGRO_DUTY"] != nil, let epoch = environment["ALLEGRO_DUTY_EPOCH"].flatMap(Int64.init) {
                giteaCommands.dutyEpoch = epoch
                log.log(.info, "bridge_duty", ["duty": environment["ALLEGRO_DUTY"] ?? "", "epoch": String(epoch)])
            }
            if let commandToken = gitea.commandToken {
                commandRoutes = CommandRoutes(commands: giteaCommands, token: Token(commandToken), log: log)
            }
            let trigger = PollTrigger()
            let intake = GiteaIntake(settings: gitea, store: store, publisher: publisher, log: log)
            if let secret = gitea.webhookSecret {
                webhook = GiteaWebhook(secret: Array(secret.utf8), repos: Set(gitea.repos), store: store, intake: intake,
                                       trigger: trigger, log: log)
            }
            services.append(GiteaPoller(settings: gitea, client: giteaClient, store: store, publisher: publisher, intake: intake,
                                        commands: giteaCommands, trigger: trigger, health: board, log: log))
        }
        var hermesRoutes: HermesRoutes?
        var modelProxy: ModelProxy?
        if hermes.offersModels, let (store, publisher) = outbox {
            let client = httpClient ?? HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
            httpClient = client
            let base = hermes.modelBaseURL.isEmpty ? nil : hermes.modelBaseURL.hasSuffix("/") ? String(hermes.modelBaseURL.dropLast()) : hermes.modelBaseURL
            modelProxy = ModelProxy(settings: hermes, configuredBaseURL: base, store: store,
                                    publisher: publisher, http: client, commandToken: hermes.commandToken.map(Token.init), log: log)
        }
        if !hermes.apiURL.isEmpty, let (store, publisher) = outbox {
            let client = httpClient ?? HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
            httpClient = client
            let api = HermesAPIClient(http: client, baseURL: hermes.apiURL.hasSuffix("/") ? String(hermes.apiURL.dropLast()) : hermes.apiURL,
                                      key: hermes.apiKey ?? "")
            var gate: ApprovalGate?
            if !hermes.allowedSigners.isEmpty, let nonces {
                gate = ApprovalGate(allowedSignersPath: hermes.allowedSigners, setting: "hermes.allowed_signers", nonces: nonces, store: store,
                                    publisher: publisher, log: log)
            }
            let sessions = HermesSessions(settings: hermes, api: api, gate: gate, store: store, publisher: publisher, log: log)
            if let commandToken = hermes.commandToken {
                hermesRoutes = HermesRoutes(sessions: sessions, settings: hermes, token: Token(commandToken), log: log)
            } else {
                log.log(.notice, "hermes_api_off", ["reason": "hermes.command_token is unset: Timmy cannot ask for sessions"])
            }
        }
        if let token, !settings.telegramChatID.isEmpty {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
            var options = CollectorOptions(relays: [relay])
            options.clientID = "allegro-bridge"
            options.name = settings.notifierName
            options.token = settings.collectorToken ?? ""
            options.start = .committed
            options.window = 1024
            options.reconnectForMillis = 60_000
            let client = httpClient ?? HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
            httpClient = client
            let notifierHealth = NotifierHealthBoard(NotifierHealth())
            services.append(NotifierService(
                settings: settings, feed: RecordFeed(options: options, kinds: NotifierService.kinds),
                telegram: TelegramClient(http: client, base: settings.telegramAPI, token: token, chatID: settings.telegramChatID),
                ledger: NotifierLedger(path: settings.dataDirectory + "/notifier.json"),
                relayHealth: relayHTTP.map { RelayHealthProbe(http: client, url: "http://\($0)/health") },
                health: notifierHealth, log: log))
            services.insert(httpService(settings, health: SharedHealth(notifier: notifierHealth, gitea: giteaHealth), commands: commandRoutes, hermes: hermesRoutes, models: modelProxy, webhook: webhook, log: log), at: 0)
        } else {
            log.log(.notice, "notifier_off", ["reason": "bridge.telegram_chat_id is empty"])
            services.insert(httpService(settings, health: SharedHealth(notifier: nil, gitea: giteaHealth), commands: commandRoutes, hermes: hermesRoutes, models: modelProxy, webhook: webhook, log: log), at: 0)
        }
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) },
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: log.logger))
        let outcome: Result<Void, any Error>
        do { try await group.run(); outcome = .success(()) } catch { outcome = .failure(error) }
        try? await httpClient?.shutdown()
        try outcome.get()
    }

    /// What `/health` reads.
    final class SharedHealth: Sendable {
        let notifier: NotifierHealthBoard?
        let gitea: GiteaHealthBoard?
        init(notifier: NotifierHealthBoard?, gitea: GiteaHealthBoard?) {
            self.notifier = notifier
            self.gitea = gitea
        }
    }

    private static func httpService(_ settings: BridgeSettings, health: SharedHealth, commands: CommandRoutes?, hermes: HermesRoutes?,
                                    models: ModelProxy?, webhook: GiteaWebhook?, log: EventLog) -> any Service {
        guard let http = settings.http, let address = try? AllegroPosix.SocketAddress(parsing: http) else { return IdleService() }
        var httpLogger = Logger(label: "allegro.http")
        httpLogger.logLevel = max(log.logger.logLevel, .notice)
        let router = Router()
        commands?.add(to: router)
        hermes?.add(to: router)
        models?.add(to: router)
        webhook?.add(to: router)
        router.get("health") { _, _ in
            let notifier = health.notifier?.current
            let gitea = health.gitea?.current
            // Failing while any duty has a problem, whatever it is doing meanwhile (sending, waiting).
            let failing = notifier.map { $0.relayProblem != nil || $0.telegramProblem != nil || $0.ledgerProblem != nil } == true
                || gitea?.state == "failing"
            struct Body: Encodable {
                var status: String
                var notifier: NotifierHealth?
                var gitea: GiteaHealth?
            }
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys]
            let data = (try? encoder.encode(Body(status: failing ? "failing" : "ok", notifier: notifier, gitea: gitea))) ?? Data("{}".utf8)
            return Response(status: failing ? .serviceUnavailable : .ok,
                            headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(address.hostText, port: Int(address.port)), serverName: "allegro-bridge"),
            onServerRunning: { channel in
                let bound = channel.localAddress.map { "\($0.ipAddress ?? address.hostText):\($0.port ?? 0)" } ?? http
                if let local = channel.localAddress { models?.boundBaseURL.set(host: local.ipAddress ?? address.hostText, port: local.port ?? 0) }
                log.log(.info, "http_listening", ["address": bound])
            },
            logger: httpLogger
        )
    }
}

/// Keeps a service group alive when the bridge has no HTTP port and no duty.
struct IdleService: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}

/// The bridge cannot start as configured; the message names the setting or variable.
public struct BridgeStartError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
