import ArgumentParser

/// `allegro relay`: until the relay issue lands, says so and exits non-zero.
struct Relay: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the relay (not yet implemented).")

    func run() throws {
        var standardError = StandardError()
        standardError.write("allegro relay: not yet: the relay lands with the relay issue; this build has the wire codec only.\n")
        throw ExitCode.failure
    }
}
