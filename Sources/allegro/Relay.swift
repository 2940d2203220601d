import AllegroPosix
import AllegroRelay
import ArgumentParser
import Foundation

/// `allegro relay`: runs the relay in the foreground until SIGTERM or SIGINT.
struct Relay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the relay.",
        discussion: """
        With no options it listens on 127.0.0.1:7400 with data under ./allegro-data. Settings come
        from the embedded defaults, then --config FILE (a JSON object), then the environment
        (ALLEGRO_PRODUCER_TOKEN, ALLEGRO_COLLECTOR_TOKEN), then the options below. Keys:
        \(ConfigurationFile.keys.joined(separator: ", ")).
        Listening beyond loopback needs both tokens.
        """
    )

    @Option(help: "A JSON configuration file.") var config: String?
    @Option(help: "Listen address, HOST:PORT (port 0 picks a free port).") var listen: String?
    @Option(help: "Data directory.") var data: String?
    @Option(name: .customLong("durable"), help: "A durable collector name (repeatable).") var durable: [String] = []
    @Option(name: .customLong("set"), help: "Override one setting, KEY=VALUE (repeatable).") var overrides: [String] = []

    func run() throws {
        ProcessSetup.resetSignals()
        ProcessSetup.raiseDescriptorLimit()
        var settings = RelayConfiguration()
        var level = RelayLog.Level.info
        do {
            if let config { try ConfigurationFile.apply(file: config, to: &settings, logLevel: &level) }
            ConfigurationFile.applyEnvironment(to: &settings)
            if let listen { settings.listen = listen }
            if let data { settings.dataDirectory = data }
            if !durable.isEmpty { settings.durableCollectors = durable }
            for override in overrides { try ConfigurationFile.apply(override: override, to: &settings, logLevel: &level) }
            try settings.validate()
        } catch {
            StandardStreams.error("allegro relay: \(error)")
            throw ExitCode(2)
        }
        do {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        } catch {
            StandardStreams.error("allegro relay: cannot create the data directory \(settings.dataDirectory): \(error.localizedDescription)")
            throw ExitCode(2)
        }
        do {
            let server = try RelayServer(configuration: settings, log: RelayLog(minimum: level))
            server.stopOnTerminationSignals()
            try server.run()
        } catch {
            StandardStreams.error("allegro relay: \(error)")
            throw ExitCode.failure
        }
    }
}
