import AllegroConfig
import AllegroLog
import AllegroPosix
import AllegroSupervisor
import ArgumentParser
import Foundation
import Logging

/// `allegro supervise`: keeps the configured services running (config/README.md, "The
/// supervisor"), in the foreground until SIGTERM or SIGINT; SIGHUP reloads the configuration.
struct Supervise: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep Allegro's services (and the host's others) running: restart with backoff that never gives up, report to Timmy.",
        discussion: """
        Reads the same file as `allegro relay`: its `supervisor:` section and its `services` list \
        (commands it starts in process groups of their own, or systemd units it restarts through \
        systemctl), each with an optional probe. With no services listed it runs `allegro relay` \
        with the same file. Restarts, probe failures and state changes go to the relay's stream as \
        Reports and alerts; /metrics and /v1/status on supervisor.http. SIGHUP reloads the file \
        after the checks of `allegro config check`; a file that fails them is refused and nothing changes.
        """
    )

    @Option(help: "A YAML or JSON configuration file.") var config: String?
    @Option(name: .customLong("set"), help: "Override one setting, KEY=VALUE (repeatable).") var overrides: [String] = []

    func run() async throws {
        ProcessSetup.resetSignals()
        ProcessSetup.ignoreHangups()
        let file = config.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
        let flags: [String: String]
        let loaded: AllegroSettings
        let relay: SocketAddress?
        do {
            flags = try ConfigCommand.parse(overrides)
            loaded = try await Self.load(file: file, flags: flags)
            relay = try Self.relayAddress(loaded)
        } catch {
            StandardStreams.error("allegro supervise: \(error)")
            throw ExitCode(2)
        }
        let level = loaded.logLevel
        LoggingSystem.bootstrap { label in KeyValueLogHandler(label: label, level: level) }
        let log = EventLog(minimum: level)
        let reload: SupervisorProcess.Reload = {
            do { return .success(try await Self.load(file: file, flags: flags).supervisor) } catch {
                return .failure(SupervisorError("\(error)"))
            }
        }
        do {
            try await SupervisorProcess.run(loaded.supervisor, services: loaded.supervisor.services ?? [], relay: relay,
                                            producerToken: loaded.relay.producerToken, reload: reload, log: log)
        } catch {
            StandardStreams.error("allegro supervise: \(error)")
            throw ExitCode.failure
        }
    }

    /// The settings, with the services resolved: none listed is the relay alone, with this file.
    static func load(file: String?, flags: [String: String]) async throws -> AllegroSettings {
        var settings = try await SettingsLoader(file: file, flags: flags).load().settings
        if settings.supervisor.services == nil {
            settings.supervisor.services = [ServiceSpec.defaultRelay(configFile: file, listen: settings.relay.listen)]
        }
        return settings
    }

    /// Where reports go: supervisor.relay, else the relay's own listen address; nil for "off".
    static func relayAddress(_ settings: AllegroSettings) throws -> SocketAddress? {
        let target = settings.supervisor.relay.isEmpty ? settings.relay.listen : settings.supervisor.relay
        if target == "off" { return nil }
        guard let address = try? SocketAddress(parsing: target) else {
            throw SettingsError(key: "supervisor.relay", value: "\"\(target)\"", source: nil, allowed: "HOST:PORT with a numeric address, or off")
        }
        return address.reachableLocally
    }
}
