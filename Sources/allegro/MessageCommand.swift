import AllegroMessages
import AllegroPosix
import ArgumentParser
import Foundation

/// `allegro message`: Allegro Requests and Reports (protocol/MESSAGES.md) between their forms.
struct MessageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "message",
        abstract: "Read and write Allegro Requests and Reports (protocol/MESSAGES.md).",
        subcommands: [Parse.self, Render.self]
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
