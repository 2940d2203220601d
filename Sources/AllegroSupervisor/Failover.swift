import AllegroLog
import AllegroMessages
import AllegroPosix
import AsyncHTTPClient
import Foundation
import NIOCore
import ServiceLifecycle
import Synchronization

/// Failover between hosts: every `fleet.check_ms` this host's supervisor asks each peer's
/// supervisor for its duties (`GET /v1/duties`), feeds the answers to its `DutyElection`, and
/// starts or stops its duty services (`Keepers.hold`). A duty taken gets a new epoch, saved
/// durably (`DATA/duties.json`) before its services start, so a restart never reuses one; every
/// take, give-back and fence is an Allegro Report and an alert (`duty_moved`) on the stream.
final class Failover: Service, Sendable {
    let fleet: FleetSpec
    let keepers: Keepers
    let reporter: SupervisorReporter
    let http: HTTPClient
    let epochsPath: String
    let log: EventLog
    /// What `/v1/duties` answers: this host's claims.
    let claims = Mutex<[DutyElection.Claim]>([])
    /// Who holds what, as this host sees it, for `/v1/status`.
    let view = Mutex<[String: String]>([:])
    /// Whether each peer answered its last check, for `/metrics`.
    let peersUp = Mutex<[String: Bool]>([:])

    init(fleet: FleetSpec, keepers: Keepers, reporter: SupervisorReporter, http: HTTPClient, dataDirectory: String, log: EventLog) {
        self.fleet = fleet
        self.keepers = keepers
        self.reporter = reporter
        self.http = http
        epochsPath = dataDirectory + "/duties.json"
        self.log = log
    }

    struct Answer: Codable {
        var host: String
        var claims: [DutyElection.Claim]
    }

    func run() async throws {
        var policy = DutyElection.Policy()
        policy.failures = fleet.failures
        policy.givebackMillis = fleet.givebackMillis
        var election = DutyElection(me: fleet.host, peers: fleet.peers.map(\.name), duties: fleet.duties, policy: policy,
                                    epochs: loadEpochs())
        var downSince: [String: Int64] = [:]
        var saved = election.epochs
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let round = Clock.monotonicNanos
            let answers = await checkPeers()
            let now = Int64(Clock.monotonicNanos / 1_000_000)
            for peer in fleet.peers {
                let answer = answers[peer.name] ?? nil
                election.checked(peer.name, answered: answer != nil, claims: answer?.claims ?? [], atMillis: now)
                if answer == nil { downSince[peer.name] = downSince[peer.name] ?? now } else { downSince[peer.name] = nil }
            }
            let decisions = election.decide(atMillis: now)
            // Before any service of a new epoch starts, and whenever a peer showed a higher one.
            if election.epochs != saved {
                saveEpochs(election.epochs)
                saved = election.epochs
            }
            if !decisions.isEmpty {
                // The services first, the claims after: a duty given back is claimed until its
                // services have stopped, so the next holder cannot start while they still run.
                await keepers.hold(election.held)
                claims.withLock { $0 = election.held.sorted { $0.key < $1.key }.map { .init(duty: $0.key, epoch: $0.value) } }
                for decision in decisions { report(decision, downSince: downSince, now: now) }
            }
            peersUp.withLock { up in for peer in fleet.peers { up[peer.name] = (answers[peer.name] ?? nil) != nil } }
            view.withLock { view in
                view = [:]
                for duty in election.held.keys { view[duty] = fleet.host }
                for peer in fleet.peers { for claim in answers[peer.name]??.claims ?? [] { view[claim.duty] = peer.name } }
            }
            let elapsed = Int((Clock.monotonicNanos - round) / 1_000_000)
            let wait = max(fleet.checkMillis - elapsed, 10)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(wait)) }
        }
    }

    /// Every peer's answer (nil: no answer within the check interval), asked in parallel.
    private func checkPeers() async -> [String: Answer?] {
        await withTaskGroup(of: (String, Answer?).self) { group in
            for peer in fleet.peers {
                let timeout = TimeAmount.milliseconds(Int64(max(fleet.checkMillis * 8 / 10, 50)))
                group.addTask { [http] in
                    do {
                        let response = try await http.execute(HTTPClientRequest(url: peer.url + "/v1/duties"), timeout: timeout)
                        let body = try await response.body.collect(upTo: 64 << 10)
                        guard response.status == .ok else { return (peer.name, nil) }
                        let answer = try JSONDecoder().decode(Answer.self, from: Data(body.readableBytesView))
                        return (peer.name, answer.host == peer.name ? answer : nil)
                    } catch {
                        return (peer.name, nil)
                    }
                }
            }
            var answers: [String: Answer?] = [:]
            for await (name, answer) in group { answers[name] = answer }
            return answers
        }
    }

    /// Prometheus lines: which duties this host holds (of those it may), their epochs, its peers.
    func metrics() -> String {
        let held = Dictionary(claims.withLock { $0 }.map { ($0.duty, $0.epoch) }) { first, _ in first }
        let mine = fleet.duties.filter { $0.value.contains(fleet.host) }.keys.sorted()
        var lines = ["# HELP allegro_supervisor_duty_held 1 while this host holds the duty (of those it may hold).",
                     "# TYPE allegro_supervisor_duty_held gauge"]
        lines += mine.map { "allegro_supervisor_duty_held{duty=\"\($0)\"} \(held[$0] == nil ? 0 : 1)" }
        lines += ["# HELP allegro_supervisor_duty_epoch The epoch of a duty this host holds.", "# TYPE allegro_supervisor_duty_epoch gauge"]
        lines += held.keys.sorted().map { "allegro_supervisor_duty_epoch{duty=\"\($0)\"} \(held[$0] ?? 0)" }
        lines += ["# HELP allegro_supervisor_peer_up 1 when the peer answered its last check.", "# TYPE allegro_supervisor_peer_up gauge"]
        lines += peersUp.withLock { $0 }.sorted { $0.key < $1.key }.map { "allegro_supervisor_peer_up{peer=\"\($0.key)\"} \($0.value ? 1 : 0)" }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A Report of every move; `duty_moved` fires while a duty is away from the first host of
    /// its list (taken by another) and resolves when it is given back to that host.
    private func report(_ decision: DutyElection.Decision, downSince: [String: Int64], now: Int64) {
        let wall = Int64(Clock.wallNanos / 1_000_000)
        switch decision {
        case let .take(duty, epoch):
            let order = fleet.duties[duty] ?? []
            let before = order.prefix { $0 != fleet.host }
            let from = before.first ?? "nobody"
            let detection = before.isEmpty ? "first in its list"
                : before.compactMap { downSince[$0] }.max().map { "\(now - $0) ms after the last of \(before.joined(separator: ", ")) stopped answering" }
                ?? "\(before.joined(separator: ", ")) not answering since this host started"
            let fields = ["Duty: \(duty)", "New holder: \(fleet.host)", "First holder: \(order.first ?? "")", "Epoch: \(epoch)", "Detected: \(detection)"]
            log.log(.warning, "duty_taken", ["duty": duty, "epoch": String(epoch), "detection": detection])
            reporter.report(task: "Failover of \(duty): taken by \(fleet.host)", results: fields.joined(separator: "\n"))
            if !before.isEmpty {
                reporter.alert("duty_moved", subject: duty, .firing, .warning,
                               summary: "\(fleet.host) holds \(duty) (epoch \(epoch)): \(from) does not answer", details: fields.joined(separator: "\n"),
                               sinceMillis: wall)
            }
        case let .giveBack(duty, to):
            let fields = ["Duty: \(duty)", "Old holder: \(fleet.host)", "New holder: \(to)",
                          "Why: \(to) has answered every check for \(SupervisorReporter.duration(Int64(fleet.givebackMillis)))"]
            log.log(.warning, "duty_given_back", ["duty": duty, "to": to])
            reporter.report(task: "Failover of \(duty): given back to \(to)", results: fields.joined(separator: "\n"))
            if fleet.duties[duty]?.first == to {
                reporter.alert("duty_moved", subject: duty, .resolved, .warning, summary: "\(duty) goes back to \(to)", sinceMillis: wall)
            }
        case let .fenced(duty, by, epoch):
            let fields = ["Duty: \(duty)", "Old holder: \(fleet.host)", "Holder: \(by)", "Epoch: \(epoch)",
                          "Why: two hosts held it (a partition healed); the stronger claim stands"]
            log.log(.warning, "duty_fenced", ["duty": duty, "by": by, "epoch": String(epoch)])
            reporter.report(task: "Failover of \(duty): stopped on \(fleet.host)", results: fields.joined(separator: "\n"))
        }
    }

    private func loadEpochs() -> [String: Int64] {
        guard let text = try? File.readText(epochsPath), let data = text.data(using: .utf8),
              let epochs = try? JSONDecoder().decode([String: Int64].self, from: data) else { return [:] }
        return epochs
    }

    private func saveEpochs(_ epochs: [String: Int64]) {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try File.replaceDurably(epochsPath, with: Array(try encoder.encode(epochs)))
        } catch {
            log.log(.error, "duties_not_saved", ["path": epochsPath, "reason": "\(error)"])
        }
    }
}
