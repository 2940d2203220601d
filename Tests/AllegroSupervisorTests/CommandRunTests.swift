import AllegroLog
@testable import AllegroSupervisor
import Foundation
import Logging
import Synchronization
import Testing

/// A command service's run as its log tells it: the start comes before anything the service
/// printed, so a reader of the log (or a test waiting on a line) always knows the pid first.
@Suite struct CommandRunTests {
    /// Keeps each event's name and fields, in the order logged.
    final class Recorded: Sendable {
        let events = Mutex<[(name: String, fields: [String: String])]>([])
    }

    struct RecordingHandler: LogHandler {
        let recorded: Recorded
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var fields: [String: String] = [:]
            for (key, value) in event.metadata ?? [:] { fields[key] = value.description }
            recorded.events.withLock { $0.append((event.message.description, fields)) }
        }
    }

    @Test func theStartIsLoggedWithItsPidBeforeTheServicesFirstLine() async throws {
        for _ in 0 ..< 20 {
            let recorded = Recorded()
            let log = EventLog(logger: Logger(label: "allegro") { _ in RecordingHandler(recorded: recorded) })
            let run = try CommandRun.start(service: "echoer", executable: "/bin/sh", arguments: ["sh", "-c", "echo up"],
                                           environment: [], directory: nil, log: log)
            #expect(await run.exited() == .exited(0))
            // The reader may log its line a moment after the reap.
            for _ in 0 ..< 500 where !recorded.events.withLock({ $0.contains { $0.name == "service_output" } }) {
                try await Task.sleep(for: .milliseconds(10))
            }
            let events = recorded.events.withLock { $0 }
            let names = events.map(\.name)
            #expect(names == ["service_started", "service_output"], "\(names)")
            #expect(events.first?.fields["pid"] == String(run.process.pid))
            #expect(events.last?.fields["line"] == "up")
        }
    }
}
