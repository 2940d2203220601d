import AllegroBridge
import AllegroConfig
import AllegroLog
import AllegroPosix
import ArgumentParser
import Foundation
import Logging

/// `allegro bridge`: Allegro toward the outside world (today: alerts, urgent Requests and the
/// daily report to Telegram), in the foreground until SIGTERM or SIGINT.
struct Bridge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the bridge: the Telegram notifier, a durable collector of the relay.",
        discussion: """
        Reads the same settings as `allegro relay` (the file's `bridge:` section, ALLEGRO_BRIDGE_<KEY> \
        variables, --set bridge.KEY=VALUE). With bridge.telegram_chat_id set, it subscribes to the \
        relay as the durable collector bridge.notifier_name (add it to the relay's durable_collectors) \
        and tells that chat of alerts, of Requests of bridge.request_urgency or above, and of the daily \
        report. The bot token comes from \(BridgeProcess.tokenVariable) or the file \
        bridge.telegram_token_file, never from the command line. /health on bridge.http says how it goes.
        """
    )

    @Option(help: "A YAML or JSON configuration file.") var config: String?
    @Option(name: .customLong("set"), help: "Override one setting, KEY=VALUE (repeatable).") var overrides: [String] = []

    func run() async throws {
        ProcessSetup.resetSignals()
        let settings: AllegroSettings
        let relay: SocketAddress
        var relayHTTP: String?
        var token: String?
        do {
            settings = try await SettingsLoader(file: config, flags: try ConfigCommand.parse(overrides)).load().settings
            let target = settings.bridge.relay.isEmpty ? settings.relay.listen : settings.bridge.relay
            guard let address = try? SocketAddress(parsing: target) else { throw SettingsError("cannot read the relay address \(target)") }
            relay = address.reachableLocally
            let control = settings.bridge.relayHTTP.isEmpty ? settings.http : settings.bridge.relayHTTP
            relayHTTP = try control.map { text in
                guard let address = try? SocketAddress(parsing: text) else { throw SettingsError("cannot read the relay's control port \(text)") }
                return address.reachableLocally.description
            }
            if settings.gitea.isOn, settings.gitea.token == nil {
                throw SettingsError(key: "gitea.token", value: "(unset)", source: nil,
                                    allowed: "gitea.url is set, so the bridge needs the bot account's token: ALLEGRO_GITEA_TOKEN or gitea.token")
            }
            if settings.hermes.offersModels, settings.hermes.providerKey?.isEmpty ?? true {
                throw SettingsError(key: "hermes.provider_key", value: "(unset)", source: nil,
                                    allowed: "hermes.provider_url is set, so the bridge needs Allegro's provider key: ALLEGRO_HERMES_PROVIDER_KEY or hermes.provider_key")
            }
            if !settings.hermes.apiURL.isEmpty, settings.hermes.apiKey?.isEmpty ?? true {
                throw SettingsError(key: "hermes.api_key", value: "(unset)", source: nil,
                                    allowed: "hermes.api_url is set, so the bridge needs the Hermes API server's key: ALLEGRO_HERMES_API_KEY or hermes.api_key")
            }
            if !settings.bridge.telegramChatID.isEmpty {
                token = try BridgeProcess.botToken(settings.bridge, environment: ProcessInfo.processInfo.environment)
            }
        } catch {
            StandardStreams.error("allegro bridge: \(error)")
            throw ExitCode(2)
        }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in KeyValueLogHandler(label: label, level: level) }
        var bridge = settings.bridge
        bridge.collectorToken = settings.relay.collectorToken
        do {
            try await BridgeProcess.run(bridge, relay: relay, relayHTTP: relayHTTP, token: token, gitea: settings.gitea, hermes: settings.hermes,
                                        producerToken: settings.relay.producerToken, log: EventLog(minimum: level))
        } catch {
            StandardStreams.error("allegro bridge: \(error)")
            throw ExitCode.failure
        }
    }
}
