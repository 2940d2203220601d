import AllegroClient
import AllegroLog
import AllegroPosix
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// `allegro supervise` as a process: takes its lock (one supervisor per data directory), stops
/// what a killed predecessor left running, keeps the services (`Keepers`), serves /health,
/// /metrics and /v1/status, reloads its configuration on SIGHUP (only one that passes the same
/// checks as `config check`; another is refused with the reason, and nothing changes), and at
/// SIGTERM or SIGINT stops its commands, each within its grace.
public enum SupervisorProcess {
    /// Reads the configuration again (SIGHUP): the new settings, or why they are refused.
    public typealias Reload = @Sendable () async -> Result<SupervisorSettings, SupervisorError>

    public static func run(_ settings: SupervisorSettings, services: [ServiceSpec], relay: AllegroPosix.SocketAddress?, producerToken: String?,
                           reload: @escaping Reload, log: EventLog) async throws {
        try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        let lockPath = settings.dataDirectory + "/supervise.lock"
        let lock = try File.open(lockPath, create: true)
        guard try lock.tryLock() else {
            throw SupervisorError("another allegro supervise holds \(lockPath): one supervisor per data directory (supervisor.data_dir)")
        }
        defer { lock.close() }
        let ledger = ChildLedger(path: settings.dataDirectory + "/children.json", log: log)
        let leftovers = await ledger.stopLeftovers(graceMillis: services.map(\.stopGraceMillis).max() ?? 10_000)
        if !leftovers.isEmpty { log.log(.warning, "leftovers_stopped", ["services": leftovers.joined(separator: ",")]) }

        let publisher = relay.map {
            StreamPublisher(address: $0, token: producerToken, producerID: "allegro-supervisor",
                            sequenceFile: settings.dataDirectory + "/producer_sequence", log: log)
        }
        let reporter = SupervisorReporter(publisher: publisher, log: log)
        let board = SupervisorBoard()
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        let keepers = Keepers(board: board, reporter: reporter, ledger: ledger, http: http, log: log)
        await keepers.apply(services, policy: settings.restart, systemdPollMillis: settings.systemdPollMillis)
        let failover = settings.fleet.map {
            Failover(fleet: $0, keepers: keepers, reporter: reporter, http: http, dataDirectory: settings.dataDirectory, log: log)
        }
        let syncthing = settings.syncthing.url.isEmpty ? nil : SyncthingWatch(settings: settings.syncthing, reporter: reporter, http: http, log: log)
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: httpService(settings.http, board: board, failover: failover, syncthing: syncthing, log: log)),
            .init(service: KeeperService(keepers: keepers, reporter: reporter, reload: reload, log: log)),
        ]
        if let failover { members.append(.init(service: failover)) }
        if let syncthing { members.append(.init(service: syncthing)) }
        let group = ServiceGroup(configuration: .init(services: members, gracefulShutdownSignals: [.sigterm, .sigint], logger: log.logger))
        let outcome: Result<Void, any Error>
        do { try await group.run(); outcome = .success(()) } catch { outcome = .failure(error) }
        await keepers.stopAll()
        publisher?.stop()
        try? await http.shutdown()
        try outcome.get()
    }

    /// Waits for the end, reloading on SIGHUP meanwhile; then stops every service.
    struct KeeperService: Service {
        let keepers: Keepers
        let reporter: SupervisorReporter
        let reload: Reload
        let log: EventLog

        func run() async throws {
            let hangups = await UnixSignalsSequence(trapping: .sighup)
            // Cancelled at a graceful shutdown, which ends the signals' sequence.
            await cancelWhenGracefulShutdown {
                var refused = false
                for await _ in hangups {
                    refused = await reloaded(refusedBefore: refused)
                }
            }
            await keepers.stopAll()
        }

        /// Returns whether the file was refused (the alert fires until a reload succeeds).
        private func reloaded(refusedBefore: Bool) async -> Bool {
            switch await reload() {
            case let .success(settings):
                log.log(.info, "config_reloaded", [:])
                if refusedBefore {
                    reporter.alert("supervisor_config_refused", subject: "supervisor", .resolved, .warning,
                                   summary: "the configuration was reloaded", sinceMillis: Int64(Clock.wallNanos / 1_000_000))
                }
                await keepers.apply(settings.services ?? [], policy: settings.restart, systemdPollMillis: settings.systemdPollMillis)
                return false
            case let .failure(error):
                reporter.alert("supervisor_config_refused", subject: "supervisor", .firing, .warning,
                               summary: "SIGHUP: the configuration was refused, nothing changed: \(error)", sinceMillis: Int64(Clock.wallNanos / 1_000_000))
                return true
            }
        }
    }

    static func httpService(_ http: String, board: SupervisorBoard, failover: Failover?, syncthing: SyncthingWatch?, log: EventLog) -> any Service {
        guard http != "off", let address = try? AllegroPosix.SocketAddress(parsing: http) else { return IdleUntilShutdown() }
        var httpLogger = Logger(label: "allegro.http")
        httpLogger.logLevel = max(log.logger.logLevel, .notice)
        let router = Router()
        router.get("health") { _, _ in
            let all = board.snapshot()
            let down = all.filter { !$0.up }.map(\.name)
            let body = #"{"status":"\#(down.isEmpty ? "ok" : "degraded")","down":[\#(down.map { "\"\($0)\"" }.joined(separator: ","))]}"#
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("metrics") { _, _ in
            let text = board.metrics() + (failover?.metrics() ?? "") + (syncthing?.metrics() ?? "")
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        if let failover {
            // What peers ask every check: this host's name and the duties it holds.
            router.get("v1/duties") { _, _ in
                let answer = Failover.Answer(host: failover.fleet.host, claims: failover.claims.withLock { $0 })
                let data = (try? JSONEncoder().encode(answer)) ?? Data("{}".utf8)
                return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                                body: .init(byteBuffer: ByteBuffer(bytes: data)))
            }
        }
        router.get("v1/status") { _, _ in
            struct Status: Encodable {
                var services: [ServiceStatus]
                /// Who holds each duty, as this host sees it (with a fleet). A list, not a
                /// mapping: key strategies would rewrite duty names used as keys.
                var duties: [DutyHolder]?
                /// This host's Syncthing (with `supervisor.syncthing_url`).
                var syncthing: SyncthingWatch.Status?
            }
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys]
            let holders = failover.map { failover in
                failover.view.withLock { $0 }.sorted { $0.key < $1.key }.map { DutyHolder(duty: $0.key, host: $0.value) }
            }
            let status = Status(services: board.snapshot(), duties: holders, syncthing: syncthing?.status())
            let data = (try? encoder.encode(status)) ?? Data("{}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(address.hostText, port: Int(address.port)), serverName: "allegro-supervise"),
            onServerRunning: { channel in
                let bound = channel.localAddress.map { "\($0.ipAddress ?? address.hostText):\($0.port ?? 0)" } ?? http
                log.log(.info, "http_listening", ["address": bound])
            },
            logger: httpLogger
        )
        return PortService(application: application, address: http, log: log)
    }

    /// The HTTP port, whose failure (the port taken) is logged and does not stop the
    /// supervisor: its services matter more than its metrics.
    struct PortService: Service {
        let application: Application<RouterResponder<BasicRequestContext>>
        let address: String
        let log: EventLog

        func run() async throws {
            do { try await application.run() } catch {
                log.log(.error, "http_failed", ["address": address, "reason": "\(error)", "meanwhile": "services kept; no /metrics or /v1/status"])
                try? await gracefulShutdown()
            }
        }
    }
}

/// Who holds a duty (`/v1/status`).
public struct DutyHolder: Sendable, Codable, Equatable {
    public var duty: String
    public var host: String
}

/// Keeps a service group alive with no HTTP port.
struct IdleUntilShutdown: Service {
    func run() async throws { try? await gracefulShutdown() }
}
