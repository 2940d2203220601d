import ArgumentParser
import Foundation

/// `allegro-bench`: the lag and throughput harness. Starts a release-built `allegro relay` (and,
/// for comparison, nats-server and redis-server from Debian) on loopback with fresh state, runs
/// the same workload through each with the same code and clock, and prints a table (or JSON).
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allegro-bench",
        abstract: "Measure Allegro's lag and throughput against direct TCP, nats-server and redis-server.",
        subcommands: [Paced.self, Throughput.self, Acks.self, Outage.self, Crash.self, Allocs.self, Instructions.self, Scale.self, Goals.self, All.self])
}

struct Common: ParsableArguments {
    @Option(help: "The allegro binary (default: $ALLEGRO_BIN or ../.build/release/allegro).") var allegro: String?
    @Option(help: "Record payload bytes.") var size = 128
    @Option(help: "The trivial C relay for the c-relay peer (default: $CRELAY_BIN).") var cRelay: String?
    @Flag(help: "Print JSON instead of a table.") var json = false

    var binary: String {
        if let allegro { return allegro }
        if let env = ProcessInfo.processInfo.environment["ALLEGRO_BIN"] { return env }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            .appendingPathComponent("../.build/release/allegro").standardized.path
    }

    func peers(_ names: String) throws -> [Peer] {
        try names.split(separator: ",").map { full in
            // NAME@PATH: the peer NAME with the relay binary at PATH, for A/B of two builds in one run.
            let parts = full.split(separator: "@", maxSplits: 1)
            let name = parts[0]
            let binary = parts.count == 2 ? String(parts[1]) : self.binary
            guard parts.count == 1 || name.hasPrefix("allegro") else { throw ValidationError("\(full): only allegro peers take @PATH") }
            let named = { (plain: String) in parts.count == 2 ? "\(plain)@" + (binary.split(separator: "/").last.map(String.init) ?? binary) : plain }
            switch name {
            case "allegro": return AllegroPeer(binary: binary, name: named("allegro"))
            case "allegro-live": return AllegroPeer(binary: binary, live: true, name: named("allegro-live"))
            // The same relays through IndependentClient.swift, written from PROTOCOL.md alone.
            case "allegro-ind": return IndependentAllegroPeer(wrapping: AllegroPeer(binary: binary, name: named("allegro-ind")))
            case "allegro-live-ind":
                return IndependentAllegroPeer(wrapping: AllegroPeer(binary: binary, live: true, name: named("allegro-live-ind")))
            // allegro-commitN: spill_fsync_interval_ms=N (0: the group commit as soon as the disk
            // is free; N may have up to three decimals, 0.25 is 250 µs), for A/B beside the default.
            case let variant where variant.hasPrefix("allegro-commit") && Double(variant.dropFirst(14)) != nil:
                return AllegroPeer(binary: binary, extra: ["--set", "spill_fsync_interval_ms=\(variant.dropFirst(14))"],
                                   name: named(String(variant)))
            // allegro+KEY=VALUE+... (or allegro-live+...): any settings (`--set KEY=VALUE`), for
            // A/B beside the default.
            case let variant where variant.hasPrefix("allegro+") || variant.hasPrefix("allegro-live+"):
                let settings = variant.split(separator: "+").dropFirst()
                guard settings.allSatisfy({ $0.contains("=") }) else { throw ValidationError("\(variant): expected allegro+KEY=VALUE[+KEY=VALUE...]") }
                return AllegroPeer(binary: binary, extra: settings.flatMap { ["--set", String($0)] },
                                   live: variant.hasPrefix("allegro-live+"), name: named(String(variant)))
            case "direct": return DirectPeer()
            case "c-relay":
                guard let path = cRelay ?? ProcessInfo.processInfo.environment["CRELAY_BIN"], FileManager.default.fileExists(atPath: path) else {
                    throw ValidationError("c-relay: pass --c-relay PATH or set CRELAY_BIN (scripts/bench builds it from Benchmarks/crelay/crelay.c)")
                }
                return CRelayPeer(binary: path)
            case "nats": return NatsPeer()
            case "redis": return RedisPeer()
            default: throw ValidationError("unknown peer \(name): use allegro, allegro-live, allegro-ind, allegro-live-ind, allegro-commitN (N: spill_fsync_interval_ms), allegro+KEY=VALUE[+KEY=VALUE], direct, c-relay, nats, redis; an allegro peer may end in @PATH (another relay binary)")
            }
        }
    }

    /// Whether the c-relay peer can run (its binary was given or built).
    var hasCRelay: Bool {
        (cRelay ?? ProcessInfo.processInfo.environment["CRELAY_BIN"]).map { FileManager.default.fileExists(atPath: $0) } ?? false
    }

    func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func report(_ measurements: [Measurement]) {
        Report.print(measurements, json: json)
    }
}

/// `items` starting at index `round` (mod its count): over as many rounds as items, each takes
/// every place in the order once. The place matters on the machine in BENCHMARKS.md: in a
/// throughput round the first Allegro relay ran up to 20 % faster than the same binary second
/// (issue 22's seventh step), so an A/B that always runs one side first measures the order.
func rotated<T>(_ items: [T], by round: Int) -> [T] {
    guard !items.isEmpty else { return items }
    let start = round % items.count
    return Array(items[start...] + items[..<start])
}

struct Paced: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Records at fixed rates; lag percentiles from the scheduled send time.")
    @OptionGroup var common: Common
    @Option(help: "Total rates in records/s, comma-separated.") var rates = "100,10000,100000"
    @Option(help: "Seconds per rate.") var seconds = 5.0
    @Option(help: "Producer connections.") var producers = 1
    @Option(help: "Collectors, each given every record.") var collectors = 1
    @Option(help: "Systems to measure, comma-separated: allegro (fsync'd delivery), allegro-live, direct, nats, redis.") var peers = "allegro,allegro-live,direct,nats,redis"

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        var results: [Measurement] = []
        for rate in rates.split(separator: ",").compactMap({ Int($0) }) {
            for peer in try common.peers(peers) {
                results.append(try Scenarios.paced(peer, rate: rate, seconds: seconds, size: common.size, producers: producers,
                                                   collectors: collectors, scratch: scratch))
            }
        }
        common.report(results)
    }
}

struct Throughput: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "As fast as producers can with batching: records/s and MB/s received.")
    @OptionGroup var common: Common
    @Option(help: "Seconds.") var seconds = 5.0
    @Option(help: "Producer connections.") var producers = 1
    @Option(help: "Records per write (one PUBLISH frame, or pipelined commands).") var batch = 256
    @Option(help: "Systems to measure.") var peers = "allegro,allegro-live,direct,nats,redis"
    @Option(help: "Rounds: each runs every peer once, starting one further along the list each round (interleaved A/B).") var rounds = 1

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        var results: [Measurement] = []
        for round in 0 ..< rounds {
            for peer in rotated(try common.peers(peers), by: round) {
                results.append(try Scenarios.throughput(peer, seconds: seconds, size: common.size, producers: producers, batch: batch,
                                                        scratch: scratch))
            }
        }
        common.report(results)
    }
}

struct Acks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Producer ACK latency at fixed rates, from the scheduled send time, beside two floors on the same disk: a write+fdatasync loop and an ideal group commit.")
    @OptionGroup var common: Common
    @Option(help: "Rates in records/s, comma-separated.") var rates = "100,10000"
    @Option(help: "Seconds per rate.") var seconds = 5.0
    @Option(help: "Allegro variants, comma-separated: allegro, allegro-commitN (spill_fsync_interval_ms=N).") var peers = "allegro"
    @Option(help: "Rounds: each runs every variant once, in turn (interleaved A/B).") var rounds = 1

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        var results: [Measurement] = []
        for round in 0 ..< rounds {
            for rate in rates.split(separator: ",").compactMap({ Int($0) }) {
                for zerosAhead in [false, true] {
                    results.append(try Scenarios.fsyncFloor(rate: rate, seconds: seconds, scratch: scratch, zerosAhead: zerosAhead))
                    results.append(try Scenarios.groupCommitFloor(rate: rate, seconds: seconds, scratch: scratch, zerosAhead: zerosAhead))
                }
                for case let peer as AllegroPeer in rotated(try common.peers(peers), by: round) {
                    results.append(try Scenarios.acks(peer, rate: rate, seconds: seconds, size: common.size, scratch: scratch))
                }
            }
        }
        common.report(results)
    }
}

struct Outage: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Collector away under load, then catch-up from the spill.")
    @OptionGroup var common: Common
    @Option(help: "Records that arrive while the collector is away.") var records = 1_000_000
    @Option(help: "Allegro variants, comma-separated: allegro, allegro-commitN, allegro+KEY=VALUE.") var peers = "allegro"
    @Option(help: "Rounds: each runs every variant once, in turn (interleaved A/B).") var rounds = 1

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        var results: [Measurement] = []
        for round in 0 ..< rounds {
            for case let peer as AllegroPeer in rotated(try common.peers(peers), by: round) {
                results.append(try Scenarios.outage(binary: common.binary, records: records, size: common.size, scratch: scratch,
                                                    extra: peer.extra, name: peer.name))
            }
        }
        common.report(results)
    }
}

struct Crash: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "kill -9 of the relay under load; nothing acked may be lost.")
    @OptionGroup var common: Common
    @Option(help: "Records published.") var records = 200_000

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        common.report([try Scenarios.crash(binary: common.binary, records: records, size: common.size, scratch: scratch)])
    }
}

struct All: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Every scenario with every peer: the BENCHMARKS.md run (or a smoke with --smoke).")
    @OptionGroup var common: Common
    @OptionGroup var allocount: AllocountOption
    @Flag(help: "Seconds-long runs that only check the scenarios work (CI).") var smoke = false
    @Flag(help: "Exit non-zero when Allegro lost, duplicated or reordered anything, or allocated more per record than an allocs threshold (never on timing).") var check = false

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let seconds = smoke ? 0.5 : 5.0
        var results: [Measurement] = []
        for rate in smoke ? [100, 10_000] : [100, 10_000, 100_000] {
            for peer in try common.peers("allegro,allegro-live,allegro-live-ind,direct" + (common.hasCRelay ? ",c-relay" : "") + ",nats,redis") {
                results.append(try Scenarios.paced(peer, rate: rate, seconds: seconds, size: common.size, producers: 1, scratch: scratch))
            }
        }
        for peer in try common.peers("allegro,allegro-live,direct,nats,redis") {
            results.append(try Scenarios.throughput(peer, seconds: seconds, size: common.size, producers: 1, batch: 256, scratch: scratch))
        }
        for rate in [100, 10_000] {
            for zerosAhead in [false, true] {
                results.append(try Scenarios.fsyncFloor(rate: rate, seconds: seconds, scratch: scratch, zerosAhead: zerosAhead))
                results.append(try Scenarios.groupCommitFloor(rate: rate, seconds: seconds, scratch: scratch, zerosAhead: zerosAhead))
            }
            results.append(try Scenarios.acks(AllegroPeer(binary: common.binary), rate: rate, seconds: seconds, size: common.size, scratch: scratch))
        }
        results.append(try Scenarios.outage(binary: common.binary, records: smoke ? 20_000 : 1_000_000, size: common.size, scratch: scratch))
        results.append(try Scenarios.crash(binary: common.binary, records: smoke ? 20_000 : 200_000, size: common.size, scratch: scratch))
        for peer in try common.peers("allegro,allegro-live") {
            for producers in smoke ? [100] : [10, 100, 1000] {
                results.append(try Scenarios.paced(peer, rate: 10_000, seconds: seconds, size: common.size, producers: producers,
                                                   collectors: 1, scratch: scratch))
            }
            for collectors in smoke ? [4] : [4, 16] {
                results.append(try Scenarios.paced(peer, rate: 10_000, seconds: seconds, size: common.size, producers: 1,
                                                   collectors: collectors, scratch: scratch))
            }
        }
        if let library = allocount.library {
            for workload in AllocWorkload.all {
                results.append(try Scenarios.allocs(workload, windows: smoke ? .smoke : .full, binary: common.binary, library: library,
                                                    size: common.size, scratch: scratch))
            }
        } else {
            // Not an error: `all` must still run where no one built the library (stderr: --json stays JSON).
            FileHandle.standardError.write(Data("allegro-bench: allocs skipped: \(AllocountOption.missing)\n".utf8))
        }
        common.report(results)
        let failures = Report.correctnessFailures(results) + Report.allocationFailures(results)
        if check && !failures.isEmpty {
            FileHandle.standardError.write(Data(("allegro-bench: " + failures.joined(separator: "; ") + "\n").utf8))
            throw ExitCode.failure
        }
    }
}
