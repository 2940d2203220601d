import AllegroLog
import AllegroPosix
import AsyncHTTPClient
import Foundation
import NIOCore
import ServiceLifecycle
import Synchronization

/// Watches this host's Syncthing (the mesh that carries files and logs to Timmy) through its
/// REST API, reading only (GET): never a change to its folders or devices. Every
/// `syncthing_check_ms` it reads the peers, their connections, each folder's state and each
/// peer's completion; meanwhile it follows Syncthing's event stream (LocalIndexUpdated,
/// FolderCompletion) so a peer's catch-up is timed as it happens. Its `SyncthingTracker` decides
/// the alerts (`syncthing_unreachable`, `syncthing_peer_lost`, `syncthing_folder_stalled`), sent on
/// the stream by the `SupervisorReporter`; /v1/status and /metrics show the rest. Restarting a
/// Syncthing whose probe fails is the supervisor's ordinary job: run it as a service.
final class SyncthingWatch: Service, Sendable {
    let settings: SupervisorSettings.Syncthing
    let reporter: SupervisorReporter
    let http: HTTPClient
    let log: EventLog
    let tracker: Mutex<SyncthingTracker>

    /// A limit on everything: what one poll reads, and one answer's size.
    static let maxFolders = 64
    static let maxPeers = 64
    static let maxAnswerBytes = 4 << 20
    /// How long one event request waits for an event (Syncthing's `timeout`, in seconds).
    static let eventWaitSeconds = 30

    init(settings: SupervisorSettings.Syncthing, reporter: SupervisorReporter, http: HTTPClient, log: EventLog) {
        self.settings = settings
        self.reporter = reporter
        self.http = http
        self.log = log
        tracker = Mutex(SyncthingTracker(alertMillis: Int64(settings.alertMillis)))
    }

    func run() async throws {
        // Cancelled at graceful shutdown; both loops end at cancellation.
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.pollLoop() }
                group.addTask { await self.eventLoop() }
            }
        }
    }

    // MARK: Polls

    private func pollLoop() async {
        var lastProblem = ""
        while !Task.isCancelled {
            let started = Clock.monotonicNanos
            do {
                try await poll()
                if !lastProblem.isEmpty { log.log(.info, "syncthing_answers", ["url": settings.url]) }
                lastProblem = ""
            } catch {
                let problem = "\(error)"
                // Once per change of problem, not every poll.
                if problem != lastProblem { log.log(.warning, "syncthing_unreachable", ["url": settings.url, "reason": problem]) }
                lastProblem = problem
                tracker.withLock { $0.unreachable(atMillis: Self.nowMillis) }
            }
            let changes = tracker.withLock { $0.alerts(atMillis: Self.nowMillis) }
            let wall = Int64(Clock.wallNanos / 1_000_000)
            for change in changes {
                reporter.alert(change.alert, subject: change.subject, change.firing ? .firing : .resolved, .warning, summary: change.summary, sinceMillis: wall)
            }
            let elapsedMillis = Int((Clock.monotonicNanos - started) / 1_000_000)
            try? await Task.sleep(for: .milliseconds(max(settings.checkMillis - elapsedMillis, 10)))
        }
    }

    private func poll() async throws {
        let key = try apiKey()
        let me: API.SystemStatus = try await get("/rest/system/status", key: key)
        let devices: [API.Device] = try await get("/rest/config/devices", key: key)
        let folders: [API.FolderConfig] = try await get("/rest/config/folders", key: key)
        let connections: API.Connections = try await get("/rest/system/connections", key: key)
        let peers = devices.filter { $0.deviceID != me.myID }.prefix(Self.maxPeers).map {
            SyncthingTracker.Peer(id: $0.deviceID, name: $0.name ?? "", connected: connections.connections[$0.deviceID]?.connected ?? false)
        }
        var seen: [SyncthingTracker.Folder] = []
        var completions: [SyncthingTracker.Completion] = []
        for folder in folders.filter({ $0.paused != true }).prefix(Self.maxFolders) {
            let query = "folder=" + Self.escaped(folder.id)
            let status: API.FolderStatus = try await get("/rest/db/status?" + query, key: key)
            let shared = (folder.devices ?? []).map(\.deviceID).filter { $0 != me.myID }.prefix(Self.maxPeers)
            seen.append(.init(id: folder.id, state: status.state, peers: Array(shared)))
            for peer in shared {
                let completion: API.Completion = try await get("/rest/db/completion?\(query)&device=\(Self.escaped(peer))", key: key)
                completions.append(.init(folder: folder.id, peer: peer, percent: completion.completion,
                                         needItems: (completion.needItems ?? 0) + (completion.needDeletes ?? 0), needBytes: completion.needBytes ?? 0))
            }
        }
        let caughtUp = tracker.withLock { $0.polled(peers: Array(peers), folders: seen, completions: completions, atMillis: Self.nowMillis) }
        caught(caughtUp)
    }

    // MARK: Events

    /// Follows LocalIndexUpdated and FolderCompletion. After any failure (Syncthing restarted:
    /// its event numbers start again) it begins anew from the newest event, skipping those
    /// already buffered, which belong to the past.
    private func eventLoop() async {
        var since: Int64?
        while !Task.isCancelled {
            do {
                let key = try apiKey()
                let events = "LocalIndexUpdated,FolderCompletion"
                guard let from = since else {
                    let buffered: [API.Event] = try await get("/rest/events?events=\(events)&since=0&timeout=0", key: key)
                    since = buffered.map(\.id).max() ?? 0
                    continue
                }
                let batch: [API.Event] = try await get("/rest/events?events=\(events)&since=\(from)&timeout=\(Self.eventWaitSeconds)", key: key,
                                                        timeoutMillis: (Self.eventWaitSeconds + 10) * 1000)
                let now = Self.nowMillis
                let caughtUp = tracker.withLock { tracker -> [SyncthingTracker.CatchUp] in
                    var caughtUp: [SyncthingTracker.CatchUp] = []
                    for event in batch.sorted(by: { $0.id < $1.id }) {
                        guard let folder = event.data?.folder else { continue }
                        if event.type == "LocalIndexUpdated" {
                            tracker.localChange(folder: folder, atMillis: now)
                        } else if event.type == "FolderCompletion", let peer = event.data?.device, let percent = event.data?.completion {
                            let data = event.data
                            let completion = SyncthingTracker.Completion(folder: folder, peer: peer, percent: percent,
                                                                         needItems: (data?.needItems ?? 0) + (data?.needDeletes ?? 0), needBytes: data?.needBytes ?? 0)
                            if let done = tracker.completed(completion, atMillis: now) { caughtUp.append(done) }
                        }
                    }
                    return caughtUp
                }
                caught(caughtUp)
                since = max(from, batch.map(\.id).max() ?? from)
            } catch {
                since = nil
                try? await Task.sleep(for: .milliseconds(settings.checkMillis))
            }
        }
    }

    private func caught(_ caughtUp: [SyncthingTracker.CatchUp]) {
        guard !caughtUp.isEmpty else { return }
        let names = tracker.withLock { tracker in caughtUp.map { tracker.name(of: $0.peer) } }
        for (done, name) in zip(caughtUp, names) {
            log.log(.info, "syncthing_caught_up", ["folder": done.folder, "peer": name, "lag_ms": String(done.lagMillis)])
        }
    }

    // MARK: Status and metrics

    struct Status: Encodable {
        struct Peer: Encodable { var name: String; var id: String; var connected: Bool }
        struct FolderPeer: Encodable {
            var name: String
            var completionPercent: Double
            var lagMs: Int64
            var lastCatchUpMs: Int64?
            func encode(to encoder: any Encoder) throws {
                // Every key, null included: a reader should not guess whether one is missing.
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(name, forKey: .name)
                try container.encode(completionPercent, forKey: .completionPercent)
                try container.encode(lagMs, forKey: .lagMs)
                try container.encode(lastCatchUpMs, forKey: .lastCatchUpMs)
            }
            enum CodingKeys: String, CodingKey { case name, completionPercent, lagMs, lastCatchUpMs }
        }
        struct Folder: Encodable { var id: String; var state: String; var peers: [FolderPeer] }
        var up: Bool
        var peers: [Peer]
        var folders: [Folder]
    }

    func status() -> Status {
        let now = Self.nowMillis
        return tracker.withLock { tracker in
            Status(up: tracker.up,
                   peers: tracker.peers.values.sorted { $0.id < $1.id }.map { .init(name: tracker.name(of: $0.id), id: $0.id, connected: $0.connected) },
                   folders: tracker.folders.values.sorted { $0.id < $1.id }.map { folder in
                       .init(id: folder.id, state: folder.state, peers: folder.peers.map { peer in
                           let link = tracker.links[folder.id]?[peer]
                           return .init(name: tracker.name(of: peer), completionPercent: link?.percent ?? 100,
                                        lagMs: tracker.lagMillis(folder: folder.id, peer: peer, atMillis: now), lastCatchUpMs: link?.lastCatchUpMillis)
                       })
                   })
        }
    }

    func metrics() -> String {
        let status = status()
        var lines = ["# HELP allegro_supervisor_syncthing_up 1 when Syncthing's REST API answered the last poll.",
                     "# TYPE allegro_supervisor_syncthing_up gauge", "allegro_supervisor_syncthing_up \(status.up ? 1 : 0)",
                     "# HELP allegro_supervisor_syncthing_peer_connected 1 while the Syncthing peer is connected.",
                     "# TYPE allegro_supervisor_syncthing_peer_connected gauge"]
        lines += status.peers.map { "allegro_supervisor_syncthing_peer_connected{peer=\"\(Self.label($0.name))\"} \($0.connected ? 1 : 0)" }
        lines += ["# HELP allegro_supervisor_syncthing_completion_percent How complete the peer is in the folder, as Syncthing computes it here.",
                  "# TYPE allegro_supervisor_syncthing_completion_percent gauge"]
        for folder in status.folders {
            lines += folder.peers.map { "allegro_supervisor_syncthing_completion_percent{folder=\"\(Self.label(folder.id))\",peer=\"\(Self.label($0.name))\"} \($0.completionPercent)" }
        }
        lines += ["# HELP allegro_supervisor_syncthing_lag_seconds How long the peer has been behind in the folder; 0 when complete.",
                  "# TYPE allegro_supervisor_syncthing_lag_seconds gauge"]
        for folder in status.folders {
            lines += folder.peers.map { "allegro_supervisor_syncthing_lag_seconds{folder=\"\(Self.label(folder.id))\",peer=\"\(Self.label($0.name))\"} \(Double($0.lagMs) / 1000)" }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A Prometheus label value: backslash, quote and line feed escaped.
    static func label(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    // MARK: HTTP

    private static var nowMillis: Int64 { Int64(Clock.monotonicNanos / 1_000_000) }

    private static func escaped(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? value
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The API key, read at every use (so a rotated key is picked up); never logged.
    private func apiKey() throws -> String {
        let text: String
        do { text = try File.readText(settings.apiKeyFile) } catch {
            throw Failure(description: "cannot read supervisor.syncthing_api_key_file \(settings.apiKeyFile): \(error)")
        }
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty, key.utf8.count <= 256, !key.contains("\n") else {
            throw Failure(description: "supervisor.syncthing_api_key_file \(settings.apiKeyFile) holds no API key (one line)")
        }
        return key
    }

    private func get<T: Decodable>(_ path: String, key: String, timeoutMillis: Int? = nil) async throws -> T {
        var request = HTTPClientRequest(url: settings.url + path)
        request.headers.add(name: "X-API-Key", value: key)
        let timeout = TimeAmount.milliseconds(Int64(timeoutMillis ?? max(settings.checkMillis, 1_000)))
        let response = try await http.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: Self.maxAnswerBytes)
        guard response.status == .ok else {
            throw Failure(description: "GET \(path.prefix { $0 != "?" }) answered \(response.status.code)")
        }
        do { return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView)) } catch {
            throw Failure(description: "GET \(path.prefix { $0 != "?" }): an answer Allegro cannot read (\(error))")
        }
    }

    /// The parts of Syncthing's answers that are read (Syncthing 1.x REST API).
    enum API {
        struct SystemStatus: Decodable { var myID: String }
        struct Device: Decodable { var deviceID: String; var name: String? }
        struct FolderDevice: Decodable { var deviceID: String }
        struct FolderConfig: Decodable { var id: String; var paused: Bool?; var devices: [FolderDevice]? }
        struct Connection: Decodable { var connected: Bool }
        struct Connections: Decodable { var connections: [String: Connection] }
        struct FolderStatus: Decodable { var state: String }
        struct Completion: Decodable { var completion: Double; var needBytes: Int64?; var needItems: Int64?; var needDeletes: Int64? }
        struct EventData: Decodable {
            var folder: String?
            var device: String?
            var completion: Double?
            var needBytes: Int64?
            var needItems: Int64?
            var needDeletes: Int64?
        }
        struct Event: Decodable { var id: Int64; var type: String; var data: EventData? }
    }
}
