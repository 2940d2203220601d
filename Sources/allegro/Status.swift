import AllegroPosix
import AllegroRelay
import ArgumentParser
import Foundation

/// `allegro status`: the relay's `/status` as a compact table, or the JSON itself.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running relay's state: connections, ring, spill, and how far behind each collector is."
    )

    @Option(help: "The relay's HTTP control port, HOST:PORT.") var http = "127.0.0.1:7401"
    @Flag(help: "Print the /status JSON instead of the table.") var json = false

    func run() async throws {
        do {
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

    /// At a glance: is this collector keeping up?
    static func verdict(_ collector: RelayStatus.Collector) -> String {
        if !collector.connected { return collector.lagRecords == 0 ? "away, nothing waiting" : "AWAY, records waiting" }
        if collector.lagSeconds < 1 { return "keeping up" }
        return "BEHIND by \(Table.seconds(collector.lagSeconds))"
    }
}
