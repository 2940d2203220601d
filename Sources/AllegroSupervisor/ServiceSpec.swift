import Foundation

/// One service the supervisor keeps running: a command line it starts itself, or a systemd
/// unit it watches and restarts through `systemctl`; and how it is judged healthy.
public struct ServiceSpec: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The program and its arguments; `allegro` as the program is the supervisor's own binary.
        case command([String])
        case systemd(unit: String)
    }

    /// 1 ... 64 of a-z, 0-9, `_` and `-`: a metric label, an alert's subject, a log field.
    public var name: String
    public var kind: Kind
    /// Environment variables for a command, on top of the few every service gets (PATH, HOME,
    /// the locale: `Executable.base`) and those passed.
    public var environment: [String: String] = [:]
    /// Variables passed from the supervisor's environment (names, or prefixes ending in `*`):
    /// a service gets no token it is not given (the relay holds no Gitea secret).
    public var passEnvironment: [String] = []
    /// The working directory of a command; nil: the supervisor's.
    public var directory: String?
    public var probe: ProbeSpec?
    /// From SIGTERM to SIGKILL when the supervisor stops a command.
    public var stopGraceMillis = 10_000
    /// Prefixes of variables never passed, whatever `passEnvironment` says (the default relay's).
    public var withheldPrefixes: [String] = []
    /// A duty of the fleet (`fleet.duties`): the service runs only while this host holds it,
    /// with ALLEGRO_DUTY and ALLEGRO_DUTY_EPOCH in its environment. Nil: it always runs.
    public var duty: String?

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }

    /// What `allegro supervise` runs with no `services` configured: the relay, with the same
    /// configuration file, probed on its control port.
    public static func defaultRelay(configFile: String?, listen: String) -> ServiceSpec {
        var relay = ServiceSpec(name: "relay", kind: .command(["allegro", "relay"] + (configFile.map { ["--config", $0] } ?? [])))
        // The relay's own settings and tokens, and none of the bridge's or Gitea's.
        relay.passEnvironment = ["ALLEGRO_*"]
        relay.withheldPrefixes = ["ALLEGRO_GITEA_", "ALLEGRO_TELEGRAM_", "ALLEGRO_BRIDGE_", "ALLEGRO_HERMES_", "ALLEGRO_SUPERVISOR_"]
        // Alive, not healthy: its /health fails while the spill cannot write, which a restart
        // does not mend (the relay pushes back meanwhile); a hung relay stops accepting.
        var probe = ProbeSpec(kind: .tcp(host: "127.0.0.1", port: 7400))
        if let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (1 ... 65_535).contains(port) {
            let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            probe = ProbeSpec(kind: .tcp(host: host == "0.0.0.0" || host == "::" || host.isEmpty ? "127.0.0.1" : host, port: port))
        }
        relay.probe = probe
        return relay
    }
}

/// How a service's health is checked besides "running": every `intervalMillis`, with a
/// `timeoutMillis` limit; `failures` in a row make it unhealthy (and restarted). Failures in the
/// first `graceMillis` after a start do not count (a relay recovering its spill is not ready).
public struct ProbeSpec: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// GET, expecting a 2xx.
        case http(String)
        /// A TCP connection accepted at HOST:PORT.
        case tcp(host: String, port: Int)
        /// A program that exits 0 (run like a service command, in its own group, killed at the timeout).
        case command([String])
    }

    public var kind: Kind
    public var intervalMillis = 5_000
    public var timeoutMillis = 2_000
    public var failures = 3
    public var graceMillis = 10_000

    public init(kind: Kind) { self.kind = kind }
}

/// A problem with the `services` list: the key path (`services[1].probe.interval_ms`), the value
/// and what is allowed.
public struct ServiceSpecError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var value: String
    public var allowed: String

    public var description: String { "\(key) = \(value): \(allowed)" }
}
