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
        return nil
    }
}
