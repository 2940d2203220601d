import ArgumentParser
import Foundation

/// `goals`: issue 22's goals, each as the ratio or bound it names, out of one command. Every
/// scenario they need runs in each of `rounds` interleaved rounds (the order of the peers rotated
/// each round), and each ratio is taken
/// inside its round (peers side by side, minutes apart at most); the table gives its median and
/// range over the rounds and in how many rounds the target held. Timing is reported, never
/// judged by the exit code (these machines are noisy); `--check` judges only what `all --check`
/// does: loss, duplication, order, allocations.
struct Goals: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Issue 22's goals as ratios from one run: throughput against nats, ACKs and durable delivery against the disk, live delivery against the C relay and the peers, allocations, catch-up replay.")
    @OptionGroup var common: Common
    @OptionGroup var allocount: AllocountOption
    @Option(help: "Seconds per paced, ACK and throughput measurement.") var seconds = 4.0
    @Option(help: "Rounds (each runs every scenario once; ratios are taken within a round).") var rounds = 2
    @Option(name: .customLong("set"), help: "Settings for the Allegro peers, KEY=VALUE joined by '+' (e.g. spill_fsync_interval_ms=0); the allocations run with the defaults, and the lz4 peer keeps spill_codec=lz4.") var settings = ""
    @Option(help: "Records for the catch-up replay (goal 6), once, after the rounds; 0: skip.") var replayRecords = 1_000_000
    @Flag(help: "Exit non-zero when Allegro lost, duplicated or reordered anything, or allocated more per record than a threshold (never on timing).") var check = false

    func validate() throws {
        guard rounds >= 1, seconds > 0 else { throw ValidationError("--rounds must be at least 1 and --seconds above 0") }
        guard settings.isEmpty || settings.split(separator: "+").allSatisfy({ $0.contains("=") }) else {
            throw ValidationError("--set: expected KEY=VALUE[+KEY=VALUE...]")
        }
        guard common.hasCRelay else {
            throw ValidationError("goal 4 compares with the trivial C relay: pass --c-relay PATH or set CRELAY_BIN (scripts/bench builds it)")
        }
    }

    /// The Allegro peers' names with `--set` applied.
    private var durableName: String { settings.isEmpty ? "allegro" : "allegro+\(settings)" }
    private var liveName: String { settings.isEmpty ? "allegro-live" : "allegro-live+\(settings)" }
    private var lz4Name: String {
        let others = settings.split(separator: "+").filter { !$0.hasPrefix("spill_codec=") }.joined(separator: "+")
        return "allegro+spill_codec=lz4" + (others.isEmpty ? "" : "+\(others)")
    }

    func run() throws {
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        var byRound: [[Measurement]] = []
        for index in 0 ..< rounds { byRound.append(try round(index, scratch: scratch)) }
        var once: [Measurement] = []
        if replayRecords > 0 {
            let extra = settings.isEmpty ? [] : settings.split(separator: "+").flatMap { ["--set", String($0)] }
            once.append(try Scenarios.outage(binary: common.binary, records: replayRecords, size: common.size, scratch: scratch,
                                             extra: extra, name: durableName))
        }
        if let library = allocount.library {
            for workload in AllocWorkload.all {
                once.append(try Scenarios.allocs(workload, windows: .full, binary: common.binary, library: library, size: common.size,
                                                 scratch: scratch))
            }
        } else {
            FileHandle.standardError.write(Data("allegro-bench: allocs skipped: \(AllocountOption.missing)\n".utf8))
        }
        let all = byRound.flatMap { $0 } + once
        common.report(all)
        if !common.json { GoalReport(rounds: byRound, once: once, durable: durableName, live: liveName, lz4: lz4Name).print() }
        let failures = Report.correctnessFailures(all) + Report.allocationFailures(all)
        if check && !failures.isEmpty {
            FileHandle.standardError.write(Data(("allegro-bench: " + failures.joined(separator: "; ") + "\n").utf8))
            throw ExitCode.failure
        }
    }

    /// One round: throughput, the disk's floor and ACKs, durable and live delivery with the peers.
    private func round(_ index: Int, scratch: URL) throws -> [Measurement] {
        var results: [Measurement] = []
        for peer in rotated(try common.peers("\(durableName),\(lz4Name),nats"), by: index) {
            results.append(try Scenarios.throughput(peer, seconds: seconds, size: common.size, producers: 1, batch: 256, scratch: scratch))
        }
        for rate in [100, 10_000] {
            // The goal names the plain (appending) loop; the relay writes over zeros written
            // ahead by default, so the floor that writes the same way is measured beside it.
            results.append(try Scenarios.fsyncFloor(rate: rate, seconds: seconds, scratch: scratch))
            results.append(try Scenarios.fsyncFloor(rate: rate, seconds: seconds, scratch: scratch, zerosAhead: true))
            for case let peer as AllegroPeer in try common.peers(durableName) {
                results.append(try Scenarios.acks(peer, rate: rate, seconds: seconds, size: common.size, scratch: scratch))
            }
        }
        let paced: [(rate: Int, peers: String)] = [
            (100, durableName),
            (10_000, "\(durableName),\(liveName),c-relay,nats,redis"),
            (100_000, "\(liveName),c-relay,nats,redis"),
        ]
        for (rate, names) in paced {
            for peer in rotated(try common.peers(names), by: index) {
                results.append(try Scenarios.paced(peer, rate: rate, seconds: seconds, size: common.size, producers: 1, scratch: scratch))
            }
        }
        return results
    }
}

/// The goals table: each goal's value per round, its median and range, and the rounds it held in.
struct GoalReport {
    let rounds: [[Measurement]]
    let once: [Measurement]
    let durable: String, live: String, lz4: String

    private func value(_ rows: [Measurement], _ scenario: String, _ peer: String, rate: Int? = nil, _ key: String) -> Double? {
        rows.first { $0.scenario == scenario && $0.peer == peer && (rate == nil || $0.parameters["rate"] == Double(rate ?? 0)) }?
            .results[key]
    }

    /// A goal measured once per round: `measure` gives the round's value (nil: missing), `holds`
    /// whether it meets the target.
    private struct Line {
        var goal: String, measure: String, target: String
        var values: [Double]
        var holds: (Double) -> Bool
        var unit: String
    }

    private func line(_ goal: String, _ measure: String, target: String, unit: String = "x", holds: @escaping (Double) -> Bool,
                      _ perRound: ([Measurement]) -> Double?) -> Line {
        Line(goal: goal, measure: measure, target: target, values: rounds.compactMap(perRound), holds: holds, unit: unit)
    }

    private func ratio(_ a: Double?, _ b: Double?) -> Double? {
        guard let a, let b, b > 0 else { return nil }
        return a / b
    }

    func print() {
        var lines: [Line] = []
        lines.append(line("1", "\(durable) records/s / nats", target: ">= 1.5", holds: { $0 >= 1.5 }) {
            ratio(value($0, "throughput", durable, "records_per_s"), value($0, "throughput", "nats", "records_per_s"))
        })
        lines.append(line("1", "\(lz4) records/s / nats", target: ">= 1.5", holds: { $0 >= 1.5 }) {
            ratio(value($0, "throughput", lz4, "records_per_s"), value($0, "throughput", "nats", "records_per_s"))
        })
        let floors = ["write+fdatasync", "write+fdatasync/zeros-ahead"]
        for floor in floors {
            for rate in [100, 10_000] {
                lines.append(line("2", "ACK p50 / \(floor) p50 at \(rate)/s", target: "<= 2", holds: { $0 <= 2 }) {
                    ratio(value($0, "acks", durable, rate: rate, "p50_us"), value($0, "acks", floor, rate: rate, "p50_us"))
                })
                lines.append(line("2", "ACK p99 / \(floor) p99 at \(rate)/s", target: "<= 3", holds: { $0 <= 3 }) {
                    ratio(value($0, "acks", durable, rate: rate, "p99_us"), value($0, "acks", floor, rate: rate, "p99_us"))
                })
            }
        }
        for floor in floors {
            for rate in [100, 10_000] {
                lines.append(line("3", "durable p99 / \(floor) p99 at \(rate)/s", target: "<= 1.5", holds: { $0 <= 1.5 }) {
                    ratio(value($0, "paced", durable, rate: rate, "p99_us"), value($0, "acks", floor, rate: rate, "p99_us"))
                })
            }
        }
        lines.append(line("4", "live p99 / c-relay p99 at 10000/s", target: "<= 1.25", holds: { $0 <= 1.25 }) {
            ratio(value($0, "paced", live, rate: 10_000, "p99_us"), value($0, "paced", "c-relay", rate: 10_000, "p99_us"))
        })
        for rate in [10_000, 100_000] {
            lines.append(line("4", "live p99 / lowest of nats, redis p99 at \(rate)/s", target: "< 1", holds: { $0 < 1 }) { rows in
                let lowest = ["nats", "redis"].compactMap { peer in value(rows, "paced", peer, rate: rate, "p99_us") }.min()
                return ratio(value(rows, "paced", live, rate: rate, "p99_us"), lowest)
            })
        }
        lines.append(line("4", "live p99 at 100000/s", target: "< 1000", unit: " µs", holds: { $0 < 1000 }) {
            value($0, "paced", live, rate: 100_000, "p99_us")
        })
        Swift.print("\n## goals (issue 22), \(rounds.count) round(s)")
        Swift.print("goal | measure | median | range | target | held in")
        for line in lines {
            let sorted = line.values.sorted()
            guard let low = sorted.first, let high = sorted.last else {
                Swift.print("\(line.goal) | \(line.measure) | - | - | \(line.target) | not measured")
                continue
            }
            let middle = sorted.count / 2
            let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
            Swift.print("\(line.goal) | \(line.measure) | \(Self.format(median))\(line.unit) | \(Self.format(low))-\(Self.format(high))"
                        + " | \(line.target) | \(line.values.filter(line.holds).count) of \(rounds.count) rounds"
                        + (line.values.count < rounds.count ? " (\(rounds.count - line.values.count) not measured)" : ""))
        }
        for row in once where row.scenario == "allocs" {
            guard let perRecord = row.results["allocs_per_record"], let threshold = row.parameters["threshold_per_record"] else { continue }
            Swift.print("5 | allocations per record, \(row.peer) | \(String(format: "%.4f", perRecord)) | - | <= \(threshold) | "
                        + (perRecord <= threshold ? "held" : "missed"))
        }
        for row in once where row.scenario == "outage" {
            guard let rate = row.results["replay_records_per_s"] else { continue }
            Swift.print("6 | catch-up replay records/s, \(row.peer) | \(Self.format(rate)) | - | >= 2000000 | "
                        + (rate >= 2_000_000 ? "held" : "missed"))
        }
    }

    static func format(_ value: Double) -> String {
        String(format: value >= 100 ? "%.0f" : "%.2f", value)
    }
}
