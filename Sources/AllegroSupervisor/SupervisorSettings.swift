import Foundation

/// `allegro supervise`'s settings: the configuration file's `supervisor:` section and its
/// `services` list (config/README.md, "The supervisor").
public struct SupervisorSettings: Sendable, Equatable {
    /// Its HTTP port: /health, /metrics (Prometheus), /v1/status. HOST:PORT.
    public var http = "127.0.0.1:7403"
    /// Its lock, and the record of the processes it started (to stop what a crash left).
    public var dataDirectory = "allegro-supervisor"
    /// The relay its reports and alerts go to; empty: the relay's own `listen`; "off": none.
    public var relay = ""
    public var restart = RestartPolicy()
    /// How often a systemd unit's state is read.
    public var systemdPollMillis = 2_000
    /// The services; nil: the relay alone (`ServiceSpec.defaultRelay`).
    public var services: [ServiceSpec]?
    /// Failover between hosts (the file's `fleet`); nil: this host alone holds every duty.
    public var fleet: FleetSpec?
    public var syncthing = Syncthing()

    /// This host's Syncthing, watched through its REST API (`SyncthingWatch`).
    public struct Syncthing: Sendable, Equatable {
        /// Its REST API, `http://HOST:PORT`; empty: not watched.
        public var url = ""
        /// A file holding its API key (one line), read at every use.
        public var apiKeyFile = ""
        public var checkMillis = 5_000
        /// How long a peer may be disconnected, a folder behind or in error, or the API silent,
        /// before it is an alert. A minute: the seed's sync-lag target.
        public var alertMillis = 60_000

        public init() {}
    }

    public init() {}

    /// The first key out of range: (key, value, allowed).
    public func problem() -> (key: String, value: String, allowed: String)? {
        if let (key, allowed) = restart.problem() {
            let value: Int
            switch key {
            case "supervisor.first_restart_ms": value = restart.firstDelayMillis
            case "supervisor.max_restart_ms": value = restart.maxDelayMillis
            case "supervisor.jitter_percent": value = restart.jitterPercent
            case "supervisor.healthy_ms": value = restart.healthyMillis
            case "supervisor.intensity_restarts": value = restart.intensityRestarts
            default: value = restart.intensityWindowMillis
            }
            return (key, String(value), allowed)
        }
        if !(100 ... 600_000).contains(systemdPollMillis) { return ("supervisor.systemd_poll_ms", String(systemdPollMillis), "100 ... 600000") }
        if dataDirectory.isEmpty { return ("supervisor.data_dir", "\"\"", "a directory") }
        if !syncthing.url.isEmpty {
            let url = syncthing.url
            guard url.hasPrefix("http://") || url.hasPrefix("https://"), URL(string: url)?.host != nil, !url.contains("?") else {
                return ("supervisor.syncthing_url", url, "Syncthing's REST API, http://HOST:PORT, or empty (not watched)")
            }
            if syncthing.apiKeyFile.isEmpty {
                return ("supervisor.syncthing_api_key_file", "\"\"", "the file holding Syncthing's API key (needed with supervisor.syncthing_url)")
            }
        }
        if !(100 ... 600_000).contains(syncthing.checkMillis) { return ("supervisor.syncthing_check_ms", String(syncthing.checkMillis), "100 ... 600000") }
        if !(0 ... 86_400_000).contains(syncthing.alertMillis) { return ("supervisor.syncthing_alert_ms", String(syncthing.alertMillis), "0 ... 86400000") }
        return nil
    }
}
