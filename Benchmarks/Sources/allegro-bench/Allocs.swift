import AllegroClient
import AllegroPosix
import AllegroWire
import ArgumentParser
import Foundation
import Glibc

/// Heap allocations per record in the running relay (issue 22, goal 5): the whole `allegro relay`
/// process, counted by liballocount (Benchmarks/allocount/allocount.c, preloaded), under load from
/// producers to a durable collector. The relay has a fixed cost per second that does not depend on
/// load (SQLite state saves every 200 ms: from under 1,000 to about 5,000 allocations/s with one
/// session), so allocations over records in one window would say little; each workload runs a
/// low-rate window and a high-rate window and reports the slope between them (allocations per
/// record) and the intercept (fixed allocations per second).
struct Allocs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Heap allocations per record in the running relay (liballocount preloaded): one producer, and 64 interleaved sessions.")
    @OptionGroup var common: Common
    @OptionGroup var allocount: AllocountOption
    @Option(help: "Seconds of each window (one at --low-rate, then one at --high-rate).") var seconds = AllocWindows.standard.seconds
    @Option(help: "Seconds at the high rate before the windows, so buffers reach their working size.") var warmup = AllocWindows.standard.warmupSeconds
    @Option(help: "Records/s in the low window.") var lowRate = AllocWindows.standard.lowRate
    @Option(help: "Records/s in the high window.") var highRate = AllocWindows.standard.highRate
    @Flag(help: "Exit non-zero when a workload allocates more per record than its threshold, or records did not arrive.") var check = false

    func run() throws {
        guard let library = allocount.library else { throw ValidationError(AllocountOption.missing) }
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let windows = AllocWindows(warmupSeconds: warmup, seconds: seconds, lowRate: lowRate, highRate: highRate)
        let results = try AllocWorkload.all.map {
            try Scenarios.allocs($0, windows: windows, binary: common.binary, library: library, size: common.size, scratch: scratch)
        }
        common.report(results)
        let failures = Report.correctnessFailures(results) + Report.allocationFailures(results)
        if check && !failures.isEmpty {
            FileHandle.standardError.write(Data(("allegro-bench: " + failures.joined(separator: "; ") + "\n").utf8))
            throw ExitCode.failure
        }
    }
}

/// Where liballocount is: `--allocount PATH`, else $ALLOCOUNT_LIB (scripts/bench builds it and
/// sets that).
struct AllocountOption: ParsableArguments {
    @Option(help: "liballocount.so, preloaded into the relay by the allocs scenario (default: $ALLOCOUNT_LIB).") var allocount: String?

    /// The library as an absolute path, or nil when none was given or no file is there.
    var library: String? {
        guard let path = allocount ?? ProcessInfo.processInfo.environment["ALLOCOUNT_LIB"], !path.isEmpty,
              FileManager.default.fileExists(atPath: path) else { return nil }
        return URL(fileURLWithPath: path).standardized.path
    }

    static let missing = "no liballocount.so: pass --allocount PATH or set ALLOCOUNT_LIB "
        + "(scripts/bench builds it from Benchmarks/allocount/allocount.c)"
}

/// One workload of the `allocs` scenario and the most allocations per record it may make.
struct AllocWorkload: Sendable {
    /// The report's peer column (starts with `allegro`, as the report's checks expect).
    let name: String
    /// Producer connections, each with a session of its own; record i comes from producer i % n.
    let producers: Int
    /// Allocations per record (the slope) above which `--check` fails.
    let thresholdPerRecord: Double

    /// The goal is zero allocations per record for both; 0.01 is zero with room for noise. An
    /// allocation per frame or per session switch would be 1 per record here (one record per
    /// frame, sessions interleaved one by one). The fixed allocations per second (the state
    /// saves) are reported, not judged; but they come in bursts, one per save about every
    /// 200 ms, and a window holding one save more than the other moves the slope by one save over
    /// the records between the windows (`noise_per_record` estimates it). With 64 sessions a save
    /// is about 3,000 allocations (a row each, through GRDB): 0.015 per record with 2 s windows,
    /// over the threshold by noise alone, and 0.006 with 5 s windows. So the smoke (CI) keeps
    /// 5 s windows.
    static let all = [
        AllocWorkload(name: "allegro-1-producer", producers: 1, thresholdPerRecord: 0.01),
        // The Hermes case: 64 sessions whose records interleave one by one.
        AllocWorkload(name: "allegro-64-sessions", producers: 64, thresholdPerRecord: 0.01),
    ]

    /// The relay's durable collector (Timmy's role).
    static let collectorName = "timmy"
}

/// The windows' lengths and rates.
struct AllocWindows: Sendable {
    var warmupSeconds: Double
    var seconds: Double
    /// High enough that every session has records in every 200 ms state save at both rates (64
    /// sessions at 2,000/s: about 6 each per save), so the saves cost the same in both windows.
    var lowRate: Int
    var highRate: Int

    static let standard = AllocWindows(warmupSeconds: 1, seconds: 5, lowRate: 2_000, highRate: 100_000)
    /// 5 s windows: shorter ones would let one state save's allocations pass the threshold (see
    /// `AllocWorkload.all`); only the warm-up is cut.
    static let smoke = AllocWindows(warmupSeconds: 0.5, seconds: 5, lowRate: 2_000, highRate: 100_000)
    static let full = standard
}

/// Why the allocs scenario could not measure (a measurement over its threshold is not an error).
struct AllocsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Scenarios {
    /// Starts a relay with liballocount preloaded and a durable collector, then sends records at
    /// the high rate (warm-up), at the low rate (window 1) and at the high rate (window 2), reading
    /// the relay's counters at each window's edges. Records per window are the collector's (it is
    /// given only records the relay has fsync'd); at the end every record sent must have arrived.
    static func allocs(_ workload: AllocWorkload, windows: AllocWindows, binary: String, library: String, size: Int,
                       scratch: URL) throws -> Measurement {
        let counterDirectory = scratch.appendingPathComponent("allocount-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: counterDirectory, withIntermediateDirectories: true)
        let relay = AllegroPeer(binary: binary, extra: ["--durable", AllocWorkload.collectorName], name: workload.name,
                                environment: ["LD_PRELOAD": library, "ALLOCOUNT_DIR": counterDirectory.path])
        try relay.start(scratch: scratch)
        defer { relay.stop() }
        guard let pid = relay.pid else { throw AllocsError("the relay has no process id") }
        let counters = try AllocationCounters(directory: counterDirectory, pid: pid)
        let collector = try CountingCollector(address: relay.address, name: AllocWorkload.collectorName)
        defer { collector.stop() }
        let producers = try (0 ..< workload.producers).map { index in
            let producer = try AllegroProducer(relay.address, id: String(format: "hermes-%02d", index))
            producer.session = Array(String(format: "hermes-session-%02d", index).utf8)
            producer.kind = Array("tool.call".utf8)
            // One record per PUBLISH, as the Python producer sends while few records are
            // unacknowledged: an allocation per frame counts as one per record.
            producer.recordsPerFrame = 1
            return producer
        }
        var sent = try drive(producers, rate: windows.highRate, seconds: windows.warmupSeconds, size: size)
        guard try collector.waitForRecords(sent, seconds: 30) else {
            throw AllocsError("\(workload.name): \(collector.received) of \(sent) warm-up records arrived")
        }

        /// One window's counts: allocations and bytes in the relay, records through it.
        struct Window { var allocations: UInt64; var bytes: UInt64; var records: Int; var seconds: Double }
        func window(rate: Int) throws -> Window {
            let before = counters.snapshot(), receivedBefore = collector.received, start = Clock.monotonicNanos
            sent += try drive(producers, rate: rate, seconds: windows.seconds, size: size)
            let after = counters.snapshot(), receivedAfter = collector.received
            return Window(allocations: after.allocations - before.allocations, bytes: after.bytes - before.bytes,
                          records: receivedAfter - receivedBefore, seconds: Double(Clock.monotonicNanos - start) / 1e9)
        }
        let low = try window(rate: windows.lowRate)
        let high = try window(rate: windows.highRate)
        _ = try collector.waitForRecords(sent, seconds: 30)
        // Producer connections stay open until everything arrived: closing one drops what the
        // relay has not read yet.
        withExtendedLifetime(producers) {}

        let lowRate = Double(low.records) / low.seconds, highRate = Double(high.records) / high.seconds
        guard highRate > lowRate else {
            throw AllocsError("\(workload.name): the high window delivered \(Int(highRate)) records/s, the low one \(Int(lowRate))")
        }
        /// Per record: the slope of counts per second against records per second, which for
        /// windows of equal length is (high - low) / (high records - low records); per second
        /// keeps a window that ran a little long from passing its fixed part off as per record.
        func slope(_ lowCount: UInt64, _ highCount: UInt64) -> Double {
            (Double(highCount) / high.seconds - Double(lowCount) / low.seconds) / (highRate - lowRate)
        }
        let allocsPerRecord = slope(low.allocations, high.allocations)
        let fixedPerSecond = Double(low.allocations) / low.seconds - allocsPerRecord * lowRate
        // SpillLoop.stateSaveNanos: one save's share of the fixed part may land in one window only.
        let stateSaveSeconds = 0.2
        let noisePerRecord = max(fixedPerSecond, 0) * stateSaveSeconds / Double(max(high.records - low.records, 1))
        return Measurement(
            scenario: "allocs", peer: workload.name,
            parameters: ["producers": Double(workload.producers), "low_rate": Double(windows.lowRate),
                         "high_rate": Double(windows.highRate), "seconds": windows.seconds, "size": Double(size),
                         "threshold_per_record": workload.thresholdPerRecord],
            results: ["allocs_per_record": allocsPerRecord, "bytes_per_record": slope(low.bytes, high.bytes),
                      "fixed_allocs_per_s": fixedPerSecond, "noise_per_record": noisePerRecord,
                      "low_allocs": Double(low.allocations), "low_records": Double(low.records),
                      "high_allocs": Double(high.allocations), "high_records": Double(high.records),
                      "received": Double(collector.received), "sent": Double(sent)])
    }

    /// Sends `rate` records/s for `seconds` in 1 ms ticks, record i from producer i % n (so with
    /// several producers their sessions interleave record by record); returns the records sent.
    /// Behind schedule, the next tick catches up: the rate holds over the window.
    static func drive(_ producers: [AllegroProducer], rate: Int, seconds: Double, size: Int) throws -> Int {
        let start = Clock.wallNanos
        let end = start + UInt64(seconds * 1e9)
        let count = producers.count
        /// How many of the first `total` records are producer `index`'s.
        func share(_ total: Int, _ index: Int) -> Int { total / count + (index < total % count ? 1 : 0) }
        var sent = 0
        while true {
            let now = min(max(Clock.wallNanos, start), end)
            let due = Int(Double(now - start) * Double(rate) / 1e9)
            for (index, producer) in producers.enumerated() {
                let records = share(due, index) - share(sent, index)
                guard records > 0 else { continue }
                let eventTimes = [UInt64](repeating: now, count: records)
                try eventTimes.withUnsafeBufferPointer { try producer.send($0, payloadSize: size) }
            }
            sent = due
            if now >= end { return sent }
            waitUntil(now + 1_000_000)
        }
    }
}

/// One process's counters as liballocount keeps them in `$ALLOCOUNT_DIR/allocount.<pid>` (layout in
/// allocount.c's top comment): mapped read-only and read while the process runs. Never written,
/// so the library's backtrace log stays off.
final class AllocationCounters {
    /// Counts since the process started; subtract two for a window.
    struct Snapshot { var allocations: UInt64; var bytes: UInt64 }

    private static let fileBytes = 4096
    private let base: UnsafeMutableRawPointer

    /// Waits up to `seconds` for the file to carry its magic and `pid` (the library stores the
    /// magic last, so a file that has it is complete).
    init(directory: URL, pid: Int32, seconds: Double = 5) throws {
        let path = directory.appendingPathComponent("allocount.\(pid)").path
        let magic = Array("ALLOCNT1".utf8)
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let mapped = AllocationCounters.map(path) {
                let complete = (0 ..< magic.count).allSatisfy { mapped.load(fromByteOffset: $0, as: UInt8.self) == magic[$0] }
                    && UInt64(littleEndian: mapped.load(fromByteOffset: 8, as: UInt64.self)) == UInt64(pid)
                if complete {
                    base = mapped
                    return
                }
                munmap(mapped, AllocationCounters.fileBytes)
            }
            guard Date() < deadline else {
                throw AllocsError("no counters in \(path) after \(seconds) s: is LD_PRELOAD a liballocount.so?")
            }
            usleep(10_000)
        }
    }

    deinit { munmap(base, AllocationCounters.fileBytes) }

    /// Aligned 8-byte loads are single instructions on x86_64 and aarch64, so a count is never
    /// seen half-written (the library adds to them atomically).
    func snapshot() -> Snapshot {
        func load(_ offset: Int) -> UInt64 { UInt64(littleEndian: base.load(fromByteOffset: offset, as: UInt64.self)) }
        return Snapshot(allocations: load(16), bytes: load(32))
    }

    /// The file mapped, or nil while it is missing or shorter than the library makes it (reading
    /// past its end would be SIGBUS).
    private static func map(_ path: String) -> UnsafeMutableRawPointer? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size >= fileBytes else { return nil }
        let mapped: UnsafeMutableRawPointer? = mmap(nil, fileBytes, PROT_READ, MAP_SHARED, fd, 0)
        guard let mapped, mapped != UnsafeMutableRawPointer(bitPattern: -1) else { return nil }  // MAP_FAILED
        return mapped
    }
}

/// Timmy's side of the allocs scenario: AllegroClient's durable collector (so the relay sees the
/// credit and heartbeats a real one sends) on a thread of its own, counting the records it is
/// given. It commits every 100 ms, as `allegro tail --collector` does when records trickle, so
/// commits cost the relay per second, not per record.
final class CountingCollector: @unchecked Sendable {
    // @unchecked: `state` is behind its lock; `done` is only waited on.
    private struct State {
        var received = 0
        var subscribed = false
        var failure: String?
        var stopping = false
    }

    private let state: Shared<State>
    private let done: DispatchSemaphore

    /// Returns once subscribed.
    init(address: String, name: String) throws {
        var options = CollectorOptions(relays: [try SocketAddress(parsing: address)])
        options.name = name
        options.clientID = name
        let state = Shared(State())
        self.state = state
        // Made on its thread: a Collector is not Sendable (one owner calls it).
        done = spawn { [options] in CountingCollector.collect(options, into: state) }
        let deadline = Date().addingTimeInterval(10)
        while true {
            let (subscribed, failure) = state.with { ($0.subscribed, $0.failure) }
            if subscribed { return }
            if let failure { throw AllocsError("collector: \(failure)") }
            guard Date() < deadline else {
                state.with { $0.stopping = true }
                throw AllocsError("collector: not subscribed after 10 s")
            }
            usleep(1000)
        }
    }

    /// Records received so far.
    var received: Int { state.with { $0.received } }

    /// Waits until `count` records have arrived (true) or `seconds` have passed (false); throws
    /// when the collector failed.
    func waitForRecords(_ count: Int, seconds: Double) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let (received, failure) = state.with { ($0.received, $0.failure) }
            if let failure { throw AllocsError("collector: \(failure)") }
            if received >= count { return true }
            guard Date() < deadline else { return false }
            usleep(1000)
        }
    }

    /// Says GOODBYE and ends the thread (it notices within one 20 ms poll).
    func stop() {
        state.with { $0.stopping = true }
        _ = done.wait(timeout: .now() + 5)
    }

    private static func collect(_ options: CollectorOptions, into state: Shared<State>) {
        do {
            let collector = try Collector(options)
            state.with { $0.subscribed = true }
            var received = 0
            var lastCommitAt = Clock.monotonicNanos
            while true {
                let event = try collector.next(timeoutMillis: 20)
                if case .record? = event { received += 1 }
                let now = Clock.monotonicNanos
                if now - lastCommitAt >= 100_000_000 {
                    if collector.lastSequence > collector.committed { try collector.commit(through: collector.lastSequence) }
                    lastCommitAt = now
                }
                let stopping = state.with { (value: inout State) -> Bool in
                    value.received = received
                    return value.stopping
                }
                if stopping { break }
            }
            collector.close()
        } catch {
            state.with { $0.failure = "\(error)" }
        }
    }
}
