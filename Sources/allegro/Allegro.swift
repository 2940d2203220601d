import ArgumentParser

/// The `allegro` command line.
@main
struct Allegro: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allegro",
        abstract: "A low-latency telemetry relay: producers push, collectors pull, nothing acknowledged is lost.",
        version: AllegroVersion.string,
        subcommands: [Relay.self, Bridge.self, Supervise.self, Push.self, Tail.self, Status.self, Sessions.self, ConfigCommand.self, Version.self,
                      ProtocolCommand.self, ApprovalCommand.self, MessageCommand.self]
    )
}

enum AllegroVersion {
    static let string = "0.2.0"
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version of allegro and of the wire protocol.")

    func run() {
        print("allegro \(AllegroVersion.string) (wire protocol \(1))")
    }
}
