import AllegroBridge
import AllegroControl
import AllegroRelay
import AllegroSupervisor
import Logging

/// Everything `allegro relay` runs with: the relay's settings, the HTTP control port and the
/// log level. The embedded defaults run a relay on loopback with no file at all.
public struct AllegroSettings: Sendable, Equatable {
    public var relay = RelayConfiguration()
    /// The HTTP control port, HOST:PORT; nil when turned off ("off").
    public var http: String? = "127.0.0.1:7401"
    /// Bearer token the control port asks for on every path but `/health`; nil asks none
    /// (a loopback control port only).
    public var controlToken: String?
    public var logLevel: Logger.Level = .info
    /// When the relay raises alerts and sends its daily report.
    public var watch = RelayWatchSettings()
    /// `allegro bridge`: the `bridge:` section.
    public var bridge = BridgeSettings()
    /// `allegro bridge`'s Gitea duty: the `gitea:` section.
    public var gitea = GiteaSettings()
    /// `allegro bridge`'s Hermes duty: the `hermes:` section.
    public var hermes = HermesSettings()
    /// `allegro supervise`: the `supervisor:` section and the file's `services` list.
    public var supervisor = SupervisorSettings()

    public init() {}
}

/// A configuration that cannot be used. The message names the key, the value and what is
/// allowed; fix that key (in the file, the environment variable or the flag named) and retry.
public struct SettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public init(key: String, value: String, source: String?, allowed: String) {
        let from = source.map { " (from \($0))" } ?? ""
        message = "invalid configuration: \(key) = \(value)\(from): \(allowed)"
    }

    public var description: String { message }
}
