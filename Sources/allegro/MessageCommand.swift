import AllegroClient
import AllegroMessages
import AllegroPosix
import ArgumentParser
import Foundation

/// `allegro message`: Allegro Requests and Reports (protocol/MESSAGES.md) between their forms.
struct MessageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "message",
        abstract: "Read and write Allegro Requests and Reports (protocol/MESSAGES.md).",
        subcommands: [Parse.self, Render.self, Publish.self]
    )

    /// A file's text, or standard input for `-`.
    static func read(_ path: String, command: String) throws -> String {
        let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: path)
        guard let data else {
            StandardStreams.error("allegro message \(command): cannot read \(path)")
            throw ExitCode(2)
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            StandardStreams.error("allegro message \(command): \(path) is not UTF-8 text")
            throw ExitCode.failure
        }
        return text
    }

    struct Parse: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read a message in Markdown and print its JSON form (exit 1 naming the line and field when it is not one)."
        )
        @Argument(help: "The Markdown file, or - for standard input.") var file = "-"

        func run() throws {
            let text = try MessageCommand.read(file, command: "parse")
            do { StandardStreams.output(try AllegroMessage(markdown: text).json) } catch {
                StandardStreams.error("allegro message parse: \(error)")
                throw ExitCode.failure
            }
        }
    }

    struct Render: ParsableCommand {
        enum Form: String, ExpressibleByArgument { case markdown, html, json }
        static let configuration = CommandConfiguration(
            abstract: "Read a message's JSON form and print it as Markdown (or Telegram HTML, or canonical JSON)."
        )
        @Argument(help: "The JSON file, or - for standard input.") var file = "-"
        @Option(help: "markdown, html (Telegram's HTML parse mode) or json.") var format: Form = .markdown

        func run() throws {
            let text = try MessageCommand.read(file, command: "render")
            let message: AllegroMessage
            do { message = try AllegroMessage(json: text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
                StandardStreams.error("allegro message render: \(error)")
                throw ExitCode.failure
            }
            let output: String
            switch format {
            case .markdown: output = message.markdown
            case .html: output = message.telegramHTML
            case .json: output = message.json + "\n"
            }
            FileHandle.standardOutput.write(Data(output.utf8))
        }
    }
}

extension MessageCommand {
    /// `allegro message publish`: tells Timmy, the way every Allegro process does: the message
    /// goes on the relay stream as a record (kind `allegro.request` or `allegro.report`, its JSON
    /// form as the payload), so his durable collector gets it in order and through outages.
    struct Publish: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish a Request or Report (Markdown or JSON) on the relay stream for Timmy.",
            discussion: """
            The record's kind is allegro.request or allegro.report, its content type \\
            application/json and its payload the message's canonical JSON (protocol/MESSAGES.md); \\
            it exits 0 once the relay acknowledged it (in its spill, fsync'd). The token defaults \\
            to $ALLEGRO_PRODUCER_TOKEN.
            """
        )
        @Argument(help: "The message, Markdown or JSON, or - for standard input.") var file = "-"
        @Option(help: "Relay address HOST:PORT (repeat for failover, tried in order).") var relay: [String] = ["127.0.0.1:7400"]
        @Option(help: "Producer token.") var token: String?
        @Option(help: "Producer id (default: allegro-message-HOST-PID).") var producer: String?
        @Option(help: "Session for the record (for example the task or request it belongs to).") var session = ""
        @Option(name: .customLong("connect-timeout"), help: "Seconds to keep trying to reach the relay.") var connectTimeout: Double = 30

        func run() throws {
            ProcessSetup.resetSignals()
            let text = try MessageCommand.read(file, command: "publish")
            let message: AllegroMessage
            do {
                let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
                message = trimmed.hasPrefix("{") ? try AllegroMessage(json: trimmed) : try AllegroMessage(markdown: text)
            } catch {
                StandardStreams.error("allegro message publish: \(error)")
                throw ExitCode.failure
            }
            let addresses: [SocketAddress]
            do { addresses = try relay.map { text throws(SocketAddress.ParseError) in try SocketAddress(parsing: text) } } catch {
                throw ValidationError(error.description)
            }
            guard connectTimeout > 0, connectTimeout <= 86_400 else {
                throw ValidationError("--connect-timeout must be more than 0 and at most 86400 seconds")
            }
            let host = ProcessInfo.processInfo.hostName, pid = ProcessInfo.processInfo.processIdentifier
            var options = ProducerOptions(relays: addresses, producerID: producer ?? "allegro-message-\(host)-\(pid)")
            options.token = token ?? ProcessInfo.processInfo.environment["ALLEGRO_PRODUCER_TOKEN"] ?? ""
            options.firstSequence = Clock.wallNanos / 1000
            options.reconnectForMillis = Int(connectTimeout * 1000)
            let reporter = ConnectionReporter(command: "allegro message publish")
            options.onConnection = { reporter.report($0) }
            do { try send(message, options) } catch {
                StandardStreams.error("allegro message publish: \(error)")
                throw ExitCode.failure
            }
        }

        /// One record, then a close that waits for its acknowledgement.
        private func send(_ message: AllegroMessage, _ options: ProducerOptions) throws {
            let producer = try Producer(options)
            var payload = message.json
            try payload.withUTF8 { bytes in
                _ = try producer.publish(session: session, kind: message.kind, contentType: "application/json",
                                         payload: UnsafeRawBufferPointer(bytes))
            }
            try producer.close()
        }
    }
}
