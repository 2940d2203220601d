import AllegroPosix
import AllegroWire
import ArgumentParser
import Foundation
import Glibc

/// Issue 22, goal 6: how the relay's CPU per record and its lag change with the number of
/// producer connections (the same total rate spread over more of them) and with the number of
/// collectors (each given every record).
struct Scale: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "CPU per record and lag from 1 to 1,000 producer connections and from 1 to 16 collectors, at one total rate.")
    @OptionGroup var common: Common
    @Option(help: "Total records/s.") var rate = 10_000
    @Option(help: "Seconds per step.") var seconds = 5.0
    @Option(help: "Producer connections per step (one collector), comma-separated.") var producers = "1,10,100,1000"
    @Option(help: "Collectors per step (one producer), comma-separated.") var collectors = "1,4,16"
    @Option(help: "Systems, comma-separated: allegro, allegro-live, allegro+KEY=VALUE, nats, ...") var peers = "allegro,allegro-live"

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        var results: [Measurement] = []
        for peer in try common.peers(peers) {
            for count in producers.split(separator: ",").compactMap({ Int($0) }) {
                results.append(try Scenarios.paced(peer, rate: rate, seconds: seconds, size: common.size, producers: count,
                                                   collectors: 1, scratch: scratch))
            }
            for count in collectors.split(separator: ",").compactMap({ Int($0) }) where count != 1 {
                results.append(try Scenarios.paced(peer, rate: rate, seconds: seconds, size: common.size, producers: 1,
                                                   collectors: count, scratch: scratch))
            }
        }
        common.report(results)
    }
}
