import AllegroWire
import ArgumentParser
import Foundation

struct ProtocolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protocol",
        abstract: "Tools for the Allegro wire protocol.",
        subcommands: [Decode.self]
    )
}

/// `allegro protocol decode`: one JSON object per frame; the first invalid frame ends it.
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print each frame of a byte stream as one JSON object per line.",
        discussion: """
        Reads FILE (or standard input when FILE is - or absent) as a stream of protocol v1 frames. \
        Exits 0 when every frame is valid; at the first invalid frame prints what is wrong and the \
        byte offset to standard error and exits 1. Frames are limited to 16 MiB, batches are not. \
        protocol/vectors/*.bin are examples. To record what a client sends, put socat between it \
        and the relay:

          socat -r capture.bin TCP-LISTEN:7399,reuseaddr TCP:127.0.0.1:7400

        then point the client at 127.0.0.1:7399 (-R FILE records what the relay sends back).
        """
    )

    @Argument(help: "The file to decode, or - for standard input.")
    var file: String = "-"

    func run() throws {
        let handle: FileHandle
        if file == "-" {
            handle = FileHandle.standardInput
        } else {
            guard let opened = FileHandle(forReadingAtPath: file) else {
                let why = FileManager.default.fileExists(atPath: file) ? "cannot be read" : "does not exist"
                throw ValidationError("\(file) \(why). Decode a recorded byte stream, for example protocol/vectors/hello_producer.bin; "
                                      + "`allegro protocol decode --help` shows how to record one with socat")
            }
            handle = opened
        }
        let buffer = InboundBuffer(limits: .permissive)
        var output = StandardOutput()
        var failure: WireError?
        while failure == nil {
            let chunk = handle.readData(ofLength: 64 * 1024)
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes { bytes in
                do throws(WireError) {
                    try buffer.decodeAll(bytes) { frame in output.write(FrameJSON.render(frame) + "\n") }
                } catch {
                    failure = error
                }
            }
        }
        if failure == nil {
            do { try buffer.finish() } catch { failure = error }
        }
        if let failure { throw report(failure, at: buffer.consumedTotal) }
    }

    private func report(_ error: WireError, at offset: Int) -> ExitCode {
        var standardError = StandardError()
        standardError.write("allegro protocol decode: invalid frame at byte offset \(offset): \(error) [\(error.kind)\(error.code.map { ", " + $0.name } ?? "")]\n")
        return ExitCode.failure
    }
}

struct StandardOutput: TextOutputStream {
    mutating func write(_ string: String) { FileHandle.standardOutput.write(Data(string.utf8)) }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) { FileHandle.standardError.write(Data(string.utf8)) }
}
