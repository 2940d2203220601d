import AllegroPosix
import AllegroStore
import ArgumentParser
import Foundation

/// `allegro sessions [ID]`: Hermes session summaries from a running relay.
struct Sessions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the Hermes sessions the relay holds records of, or show one.",
        discussion: "Summaries come from record headers (session, kind, producer) and follow the spill's retention."
    )

    @Argument(help: "A session id: show its counts by event kind and producer.") var id: String?
    @Option(help: "The relay's HTTP control port, HOST:PORT.") var http = "127.0.0.1:7401"
    @Option(help: "List at most this many sessions, newest first.") var limit = 50
    @Flag(help: "Print the JSON answer instead of a table.") var json = false

    func run() async throws {
        do {
            let client = try ControlClient(address: http)
            let path = id.map { "/sessions/" + ($0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? $0) }
                ?? "/sessions?limit=\(limit)"
            if json {
                StandardStreams.output(String(decoding: try await client.get(path), as: UTF8.self))
            } else if id != nil {
                StandardStreams.output(Self.render(try await client.decode(SessionDetail.self, from: path)))
            } else {
                StandardStreams.output(Self.render(try await client.decode([SessionSummary].self, from: path)))
            }
        } catch {
            StandardStreams.error("allegro sessions: \(error)")
            throw ExitCode.failure
        }
    }

    static func render(_ sessions: [SessionSummary]) -> String {
        var rows = [["SESSION", "RECORDS", "BYTES", "ERRORS", "FIRST SEEN", "LAST SEEN"]]
        for session in sessions {
            rows.append([session.id, String(session.records), Table.bytes(Int(session.bytes)), String(session.errors),
                         Table.time(session.firstSeenNanos), Table.time(session.lastSeenNanos)])
        }
        return sessions.isEmpty ? "no sessions held" : Table.render(rows)
    }

    static func render(_ detail: SessionDetail) -> String {
        let summary = detail.summary
        var text = "session \(summary.id): \(summary.records) records, \(Table.bytes(Int(summary.bytes))), \(summary.errors) errors, "
            + "\(Table.time(summary.firstSeenNanos)) ... \(Table.time(summary.lastSeenNanos))\n\n"
        var kinds = [["KIND", "RECORDS", "BYTES", "ERRORS"]]
        for kind in detail.kinds {
            kinds.append([kind.kind.isEmpty ? "(none)" : kind.kind, String(kind.records), Table.bytes(Int(kind.bytes)), String(kind.errors)])
        }
        var producers = [["PRODUCER", "RECORDS", "BYTES"]]
        for producer in detail.producers {
            producers.append([producer.producer, String(producer.records), Table.bytes(Int(producer.bytes))])
        }
        text += Table.render(kinds) + "\n\n" + Table.render(producers)
        return text
    }
}
