import AllegroConfig
import AllegroPosix
import ArgumentParser

/// `allegro config check [FILE]`: validates a configuration and prints the effective settings.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check a configuration.",
        subcommands: [Check.self]
    )

    static var keyList: String { SettingsLoader.keys.joined(separator: ", ") }

    /// `KEY=VALUE` overrides as a dictionary.
    static func parse(_ overrides: [String]) throws(SettingsError) -> [String: String] {
        var flags: [String: String] = [:]
        for text in overrides {
            guard let equals = text.firstIndex(of: "=") else {
                throw SettingsError("--set \(text): expected KEY=VALUE, with KEY one of \(keyList)")
            }
            flags[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        return flags
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate settings and print the effective configuration (tokens masked).",
            discussion: """
            Reads FILE (YAML or JSON) if given, then ALLEGRO_<KEY> environment variables, then --set \
            overrides, exactly as `allegro relay` would. Exits 0 with the effective settings, each \
            with where it came from, or 2 with an error naming the key, the value and what is allowed.
            """
        )

        @Argument(help: "A YAML or JSON configuration file.") var file: String?
        @Option(name: .customLong("set"), help: "Override one setting, KEY=VALUE (repeatable).") var overrides: [String] = []

        func run() async throws {
            do {
                let loaded = try await SettingsLoader(file: file, flags: try ConfigCommand.parse(overrides)).load()
                StandardStreams.output(loaded.rendered())
            } catch {
                StandardStreams.error("allegro config check: \(error)")
                throw ExitCode(2)
            }
        }
    }
}
