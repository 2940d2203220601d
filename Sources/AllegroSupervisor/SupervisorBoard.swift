import Synchronization

/// How one service is, as `/v1/status` shows it (keys in snake case) and `/metrics` counts it.
public struct ServiceStatus: Sendable, Codable, Equatable {
    public var name: String
    /// "command" or "systemd".
    public var kind: String
    /// starting, running, unhealthy, stopping, backoff (waiting to restart), stopped, failed_to_start.
    public var state = "starting"
    public var pid: Int32?
    public var restarts = 0
    public var lastExit: String?
    public var lastExitStatus: Int32?
    /// The wait before the next restart while in backoff; 0 otherwise.
    public var backoffSeconds = 0.0
    public var probeLatencySeconds: Double?
    public var probeFailures = 0
    public var crashLooping = false
    /// For a systemd unit: its ActiveState/SubState.
    public var unitState: String?

    /// Running (and passing its probe, if it has one): state is "running".
    public var up = false

    public init(name: String, kind: String) {
        self.name = name
        self.kind = kind
    }
}

/// Every service's status, shared by the keepers (writers) and the HTTP port (reader).
public final class SupervisorBoard: Sendable {
    private let services = Mutex<[String: ServiceStatus]>([:])

    public init() {}

    func update(_ name: String, kind: String, _ change: (inout ServiceStatus) -> Void) {
        services.withLock { services in
            var status = services[name] ?? ServiceStatus(name: name, kind: kind)
            change(&status)
            status.up = status.state == "running"
            services[name] = status
        }
    }

    func remove(_ name: String) { _ = services.withLock { $0.removeValue(forKey: name) } }

    /// In name order.
    public func snapshot() -> [ServiceStatus] { services.withLock { $0.values.sorted { $0.name < $1.name } } }

    /// Prometheus' text format.
    public func metrics() -> String {
        let all = snapshot()
        var lines: [String] = []
        func family(_ name: String, _ type: String, _ help: String, _ value: (ServiceStatus) -> Double?) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            for status in all {
                guard let number = value(status) else { continue }
                lines.append("\(name){service=\"\(status.name)\"} \(Self.format(number))")
            }
        }
        family("allegro_supervisor_service_up", "gauge", "1 while the service runs (and passes its probe).") { $0.up ? 1 : 0 }
        family("allegro_supervisor_service_restarts_total", "counter", "Restarts by the supervisor since it started.") { Double($0.restarts) }
        family("allegro_supervisor_service_last_exit_status", "gauge", "The last exit status (128 + signal when killed).") {
            $0.lastExitStatus.map(Double.init)
        }
        family("allegro_supervisor_service_backoff_seconds", "gauge", "The wait before the next restart (0 unless waiting).") { $0.backoffSeconds }
        family("allegro_supervisor_service_probe_latency_seconds", "gauge", "How long the last probe took.") { $0.probeLatencySeconds }
        family("allegro_supervisor_service_probe_failures", "gauge", "Failed probes in a row.") { Double($0.probeFailures) }
        family("allegro_supervisor_service_crash_looping", "gauge", "1 while restarts exceed the intensity limit.") { $0.crashLooping ? 1 : 0 }
        return lines.joined(separator: "\n") + "\n"
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
