import AllegroPosix
import AllegroRelay
import AllegroSupervisor
import ArgumentParser
import Foundation

/// `allegro status`: the relay's `/status` as a compact table, or the JSON itself.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running relay's state: connections, ring, spill, and how far behind each collector is."
    )

    @Option(help: "The relay's HTTP control port, HOST:PORT.") var http = "127.0.0.1:7401"
    @Option(help: "Show the services of the `allegro supervise` whose port (supervisor.http) this is, HOST:PORT, instead of the relay.")
    var supervisor: String?
    @Flag(help: "Print the /status JSON instead of the table.") var json = false

    func run() async throws {
        do {
            if let supervisor {
                let client = try ControlClient(address: supervisor)
                if json {
                    StandardStreams.output(String(decoding: try await client.get("/v1/status"), as: UTF8.self))
                    return
                }
                let status = try await client.decode(SupervisorStatus.self, from: "/v1/status")
                var text = Self.render(status.services)
                if let duties = status.duties {
                    var rows = [["DUTY", "HELD BY"]]
                    for holder in duties { rows.append([holder.duty, holder.host]) }
                    if duties.isEmpty { rows.append(["(no duty held by any host answering)", ""]) }
                    text += "\n\n" + Table.render(rows)
                }
                if let syncthing = status.syncthing { text += "\n\n" + Self.render(syncthing) }
                StandardStreams.output(text)
                return
            }
            let client = try ControlClient(address: http)
            if json {
                StandardStreams.output(String(decoding: try await client.get("/status"), as: UTF8.self))
                return
            }
            StandardStreams.output(Self.render(try await client.decode(RelayStatus.self, from: "/status")))
        } catch {
            StandardStreams.error("allegro status: \(error)")
            throw ExitCode.failure
        }
    }

    static func render(_ status: RelayStatus) -> String {
        let uptime = Double(status.publishedAtNanos &- status.startedAtNanos) / 1e9
        var lines = [
            "relay \(status.relayID) at \(status.listen): \(status.state), up \(Table.seconds(uptime))",
            "spill: \(status.spill.failure.map { "FAILING: \($0)" } ?? "healthy"), \(status.spill.segments) segments, "
                + "\(Table.bytes(status.spill.bytes)); durable through \(status.spill.durableThrough), "
                + "\(status.acksOutstanding) records awaiting fsync",
            "ring: \(status.ring.records) records, \(Table.bytes(status.ring.bytes)) of \(Table.bytes(status.ring.byteCapacity))"
                + "; next sequence \(status.nextSequence)",
            "connections: \(status.connections.producers) producers, \(status.connections.collectors) collectors, "
                + "\(status.connections.handshaking) in handshake",
            "records: \(status.traffic.recordsIn) in, \(status.traffic.recordsOut) out, \(status.traffic.duplicates) duplicates; "
                + "retention dropped \(status.retention.droppedRecords) uncommitted",
        ]
        if !status.errors.isEmpty {
            lines.append("errors sent: " + status.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        lines.append("")
        var rows = [["COLLECTOR", "CONNECTED", "CURSOR", "COMMITTED", "BEHIND", "OLDEST WAITING", "VERDICT"]]
        for collector in status.collectors {
            rows.append([
                collector.durable ? collector.name : "(ephemeral \(collector.peer ?? "?"))",
                collector.connected ? "yes" : "no",
                collector.cursor.map(String.init) ?? "-",
                collector.committed.map(String.init) ?? "-",
                "\(collector.lagRecords) records",
                Table.seconds(collector.lagSeconds),
                verdict(collector),
            ])
        }
        if status.collectors.isEmpty { rows.append(["(no collectors)", "", "", "", "", "", ""]) }
        lines.append(Table.render(rows))
        return lines.joined(separator: "\n")
    }

    /// What `allegro supervise` answers on /v1/status.
    struct SupervisorStatus: Decodable {
        var services: [ServiceStatus]
        /// Who holds each duty, with a fleet.
        var duties: [DutyHolder]?
        /// This host's Syncthing, when watched.
        var syncthing: Syncthing?
    }

    /// The supervisor's view of Syncthing (its `/v1/status`, keys from snake case).
    struct Syncthing: Decodable {
        struct Peer: Decodable { var name: String; var connected: Bool }
        struct FolderPeer: Decodable { var name: String; var completionPercent: Double; var lagMs: Int64; var lastCatchUpMs: Int64? }
        struct Folder: Decodable { var id: String; var state: String; var peers: [FolderPeer] }
        var up: Bool
        var peers: [Peer]
        var folders: [Folder]
    }

    static func render(_ syncthing: Syncthing) -> String {
        var rows = [["SYNCTHING", syncthing.up ? "answers" : "DOES NOT ANSWER", "", ""], ["PEER", "CONNECTED", "", ""]]
        rows += syncthing.peers.map { [$0.name, $0.connected ? "yes" : "NO", "", ""] }
        rows.append(["FOLDER TO PEER", "STATE", "COMPLETE", "LAG (LAST CATCH-UP)"])
        for folder in syncthing.folders {
            for peer in folder.peers {
                let last = peer.lastCatchUpMs.map { " (\(Table.seconds(Double($0) / 1000)))" } ?? ""
                rows.append(["\(folder.id) to \(peer.name)", folder.state, "\((peer.completionPercent * 10).rounded() / 10) %",
                             Table.seconds(Double(peer.lagMs) / 1000) + last])
            }
        }
        return Table.render(rows)
    }

    static func render(_ services: [ServiceStatus]) -> String {
        var rows = [["SERVICE", "KIND", "STATE", "PID", "RESTARTS", "LAST EXIT", "PROBE"]]
        for service in services {
            let probe = service.probeLatencySeconds.map { service.probeFailures > 0 ? "\(service.probeFailures) failed" : Table.seconds($0) } ?? "-"
            var state = service.state + (service.crashLooping ? ", CRASH-LOOPING" : "")
            if service.state == "backoff" { state += " \(Table.seconds(service.backoffSeconds))" }
            if let unit = service.unitState { state += " (\(unit))" }
            rows.append([service.name, service.kind, state, service.pid.map(String.init) ?? "-", String(service.restarts),
                         service.lastExit ?? "-", probe])
        }
        if services.isEmpty { rows.append(["(no services)", "", "", "", "", "", ""]) }
        return Table.render(rows)
    }

    /// At a glance: is this collector keeping up?
    static func verdict(_ collector: RelayStatus.Collector) -> String {
        if !collector.connected { return collector.lagRecords == 0 ? "away, nothing waiting" : "AWAY, records waiting" }
        if collector.lagSeconds < 1 { return "keeping up" }
        return "BEHIND by \(Table.seconds(collector.lagSeconds))"
    }
}
