import AllegroLog
import AllegroConfig
import AllegroControl
import AllegroPosix
import AllegroRelay
import ArgumentParser
import Foundation
import Logging

/// `allegro relay`: runs the relay and its HTTP control port in the foreground until SIGTERM or
/// SIGINT (graceful; a second signal exits at once).
struct Relay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the relay.",
        discussion: """
        With no options it listens on 127.0.0.1:7400 (HTTP control port 127.0.0.1:7401) with data \
        under ./allegro-data. Settings come from the embedded defaults, then --config FILE (YAML or \
        JSON), then ALLEGRO_<KEY> environment variables, then the options below. Keys: \
        \(ConfigCommand.keyList). `allegro config check` prints the result. \
        Listening beyond loopback needs both tokens.
        """
    )

    @Option(help: "A YAML or JSON configuration file.") var config: String?
    @Option(help: "Listen address, HOST:PORT (port 0 picks a free port).") var listen: String?
    @Option(help: "HTTP control port, HOST:PORT, or off.") var http: String?
    @Option(help: "Data directory.") var data: String?
    @Option(name: .customLong("durable"), help: "A durable collector name (repeatable).") var durable: [String] = []
    @Option(name: .customLong("set"), help: "Override one setting, KEY=VALUE (repeatable).") var overrides: [String] = []

    func run() async throws {
        ProcessSetup.resetSignals()
        ProcessSetup.raiseDescriptorLimit()
        let settings: AllegroSettings
        do {
            settings = try await SettingsLoader(file: config, flags: try flags()).load().settings
        } catch {
            StandardStreams.error("allegro relay: \(error)")
            throw ExitCode(2)
        }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in KeyValueLogHandler(label: label, level: level) }
        let metrics = MetricsExport.bootstrap()
        do {
            try FileManager.default.createDirectory(atPath: settings.relay.dataDirectory, withIntermediateDirectories: true)
        } catch {
            StandardStreams.error("allegro relay: cannot create the data directory \(settings.relay.dataDirectory): \(error.localizedDescription)")
            throw ExitCode(2)
        }
        do {
            try await ControlProcess.run(settings.relay, http: settings.http, controlToken: settings.controlToken, watch: settings.watch,
                                         log: EventLog(minimum: level), metrics: metrics)
        } catch {
            StandardStreams.error("allegro relay: \(error)")
            throw ExitCode.failure
        }
    }

    /// The options given, as configuration keys.
    private func flags() throws(SettingsError) -> [String: String] {
        var flags = try ConfigCommand.parse(overrides)
        if let listen { flags["listen"] = listen }
        if let http { flags["http"] = http }
        if let data { flags["data_dir"] = data }
        if !durable.isEmpty { flags["durable_collectors"] = durable.joined(separator: ",") }
        return flags
    }
}
