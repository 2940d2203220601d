import AllegroClient
import AllegroLog
import AllegroPosix
import AllegroRelay
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// `allegro relay` as a process: the relay's event loop and the HTTP control port, run as one
/// swift-service-lifecycle group that SIGTERM and SIGINT stop gracefully. The relay drains
/// first while `/health` says "stopping"; the HTTP port closes after it.
public enum ControlProcess {
    /// Runs until a stop signal (returns normally: exit 0) or a failure (throws).
    /// `http` is HOST:PORT or nil (no control port); with `controlToken`, every path but
    /// `/health` asks for it as a bearer token.
    /// `watch` says when the relay raises alerts and reports (an interval of 0: never).
    public static func run(_ configuration: RelayConfiguration, http: String?, controlToken: String? = nil,
                           watch: RelayWatchSettings = RelayWatchSettings(), log: EventLog, metrics: MetricsExport) async throws {
        let address = try http.map { try AllegroPosix.SocketAddress(parsing: $0) }
        // The relay listens (RelayRunner.start) before the service group traps SIGTERM and SIGINT:
        // trapped from here on, one that comes in between stops it gracefully instead of killing it.
        let early = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let earlySignal = Task<Bool, Never> {
            for await _ in early { return true }
            return false
        }
        defer { earlySignal.cancel() }
        let monitor = RelayMonitor()
        let runner = try await RelayRunner.start(configuration, log: log, monitor: monitor, metrics: RelayMetrics())
        var services: [any Service] = []
        if let http, let address {
            var httpLogger = Logger(label: "allegro.http")
            httpLogger.logLevel = max(log.logger.logLevel, .notice)
            let routes = ControlRoutes(monitor: monitor, store: runner.store, metrics: metrics, token: controlToken)
            services.append(Application(
                router: routes.router(),
                configuration: .init(address: .hostname(address.hostText, port: Int(address.port)), serverName: "allegro"),
                onServerRunning: { channel in
                    let bound = channel.localAddress.map { "\($0.ipAddress ?? address.hostText):\($0.port ?? 0)" } ?? http
                    log.log(.info, "http_listening", ["address": bound])
                },
                logger: httpLogger
            ))
        }
        services.append(RelayService(runner: runner, log: log))
        let startMillis = Int64(Clock.wallNanos / 1_000_000)
        do {
            try runner.store.recordEvent(kind: "relay_started", detail: runner.address, records: 0, atNanos: Clock.wallNanos)
        } catch {
            log.log(.warning, "event_not_recorded", ["kind": "relay_started", "reason": "\(error)"])
        }
        if watch.intervalMillis > 0, let own = (try? AllegroPosix.SocketAddress(parsing: runner.address))?.reachableLocally {
            // Last in the group, so the first to stop: its last alerts still reach the relay.
            let publisher = StreamPublisher(address: own, token: configuration.producerToken, producerID: "allegro-relay-watch",
                                            sequenceFile: configuration.dataDirectory + "/watch_producer_sequence", log: log)
            services.append(RelayWatchService(settings: watch, configuration: configuration, monitor: monitor, store: runner.store,
                                              metrics: metrics, publisher: publisher, log: log, startMillis: startMillis))
        }
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: log.logger
        ))
        // A signal before the group's own handlers: the group starts, then shuts down gracefully
        // (a later one reaches both, and a second shutdown request changes nothing).
        let forwarder = Task {
            if await earlySignal.value { await group.triggerGracefulShutdown() }
        }
        defer { forwarder.cancel() }
        do {
            try await group.run()
        } catch let error as IOError {
            // NIO's only socket here is the control port's.
            throw ControlPortUnavailable(address: http ?? "", reason: error.description)
        }
    }
}

/// The HTTP control port could not listen (the relay, which had started, stopped gracefully).
public struct ControlPortUnavailable: Error, CustomStringConvertible {
    public var address: String
    public var reason: String
    public var description: String {
        "the HTTP control port cannot listen on \(address): \(reason); choose another with --http HOST:PORT (or --http off)"
    }
}
