import AllegroPosix
import ArgumentParser
import Foundation

/// Instructions per record in the running relay (issue 22, goal 5's second check): `allegro relay`
/// under valgrind's callgrind, which counts the instructions the process executes on all its
/// threads (the kernel's work not included). The same work gives the same count on a busy or a
/// quiet machine, unlike CPU time; but the relay batches by time (spill blocks, fsync groups, state
/// saves), so the work itself varies a little from run to run (per record, within about 15 %
/// over three runs when this was written). As in `allocs`, each workload runs a low-rate and a
/// high-rate window; the slope between them is the instructions per record and the intercept the
/// fixed instructions per second (timers, state saves, commits). Then the functions that took the
/// most instructions per record in the high-rate window, from callgrind_annotate.
struct Instructions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Instructions per record in the running relay (valgrind's callgrind): one producer, and 64 interleaved sessions.")
    @OptionGroup var common: Common
    @Option(help: "Seconds each window sends for (one at --low-rate, then one at --high-rate); each then waits until the relay delivered them all.")
    var seconds = AllocWindows.instructions.seconds
    @Option(help: "Seconds at the high rate before the windows (counted by no window): code gets translated, buffers reach their working size.")
    var warmup = AllocWindows.instructions.warmupSeconds
    @Option(help: "Records/s in the low window.") var lowRate = AllocWindows.instructions.lowRate
    @Option(help: "Records/s in the high window (callgrind slows the relay 20 to 50 times).") var highRate = AllocWindows.instructions.highRate
    @Option(help: "Functions listed per workload, by instructions per record in the high window (0: none).") var top = 15
    @Flag(help: "List functions by inclusive instructions (with what they call) instead of their own.") var inclusive = false
    @Option(help: "Seconds to wait for the relay under valgrind to listen.") var listenerSeconds = 120.0
    @Option(help: "valgrind (default: the one on PATH; vgdb and callgrind_annotate are looked for beside it, then on PATH).") var valgrind: String?

    func validate() throws {
        guard lowRate > 0, highRate > lowRate else { throw ValidationError("--high-rate must be above --low-rate, and both above 0") }
        guard seconds > 0, warmup >= 0, listenerSeconds > 0, top >= 0 else {
            throw ValidationError("--seconds and --listener-seconds must be above 0, --warmup and --top at least 0")
        }
    }

    func run() throws {
        let tools = try CallgrindTools.find(valgrind: valgrind)
        let scratch = try common.scratch()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let setup = try CallgrindSetup.prepare(binary: common.binary, tools: tools, scratch: scratch, listenerSeconds: listenerSeconds)
        let windows = AllocWindows(warmupSeconds: warmup, seconds: seconds, lowRate: lowRate, highRate: highRate)
        let runs = try AllocWorkload.all.map {
            try Scenarios.instructions($0, windows: windows, setup: setup, size: common.size, scratch: scratch)
        }
        let rows = runs.map(\.measurement)
        if common.json { Report.print(rows, json: true) } else { Report.printInstructions(rows) }
        guard top > 0 else { return }
        for run in runs {
            let listing = try FunctionListing.make(run, tools: tools, inclusive: inclusive, top: top)
            // With --json, standard output stays one JSON document.
            let text = "\n" + listing.lines().joined(separator: "\n") + "\n"
            if common.json { FileHandle.standardError.write(Data(text.utf8)) } else { Swift.print(text, terminator: "") }
        }
    }
}

/// The instructions scenario's windows: `AllocWindows`, at rates a relay that callgrind slows 20
/// to 50 times keeps up with.
extension AllocWindows {
    static let instructions = AllocWindows(warmupSeconds: 2, seconds: 5, lowRate: 200, highRate: 2_000)
    /// The longest wait for the relay to deliver what a window (or the warm-up) sent, after its
    /// last record: well above what it needs when it keeps up, for when it does not.
    static let deliverySeconds = 120.0
}

/// Why the instructions scenario could not measure.
struct InstructionsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: The tools

/// The programs the scenario runs, found before anything starts.
struct CallgrindTools: Sendable {
    let valgrind: String
    /// Sends callgrind's monitor commands to a running process (what callgrind_control uses).
    let vgdb: String
    let annotate: String
    /// For a copy of the relay without its debug information (binutils).
    let objcopy: String
    /// For the sigsuspend shim (`CallgrindSetup`).
    let compiler: String
    /// For `swift demangle`; nil: functions keep their mangled names.
    let swift: String?

    static func find(valgrind given: String?) throws -> CallgrindTools {
        guard let valgrind = given ?? executable("valgrind"), FileManager.default.isExecutableFile(atPath: valgrind) else {
            throw InstructionsError("valgrind not found (\(given ?? "not on PATH")): the instructions scenario runs the relay under "
                                    + "valgrind's callgrind; install it (Debian: apt-get install valgrind) or pass --valgrind PATH")
        }
        let directory = URL(fileURLWithPath: valgrind).deletingLastPathComponent()
        /// Beside valgrind first (the same installation), then on PATH.
        func companion(_ name: String) -> String? {
            let beside = directory.appendingPathComponent(name).path
            return FileManager.default.isExecutableFile(atPath: beside) ? beside : executable(name)
        }
        guard let vgdb = companion("vgdb"), let annotate = companion("callgrind_annotate") else {
            throw InstructionsError("vgdb or callgrind_annotate not found beside \(valgrind) or on PATH (both come with valgrind)")
        }
        guard let objcopy = executable("objcopy") else {
            throw InstructionsError("objcopy not found on PATH (binutils): the relay runs under valgrind without its debug information")
        }
        guard let compiler = executable("cc") else {
            throw InstructionsError("cc not found on PATH: the relay under valgrind needs a small preloaded C shim (CallgrindSetup)")
        }
        return CallgrindTools(valgrind: valgrind, vgdb: vgdb, annotate: annotate, objcopy: objcopy, compiler: compiler,
                              swift: executable("swift"))
    }

    /// The path of an executable file called `name` in a $PATH directory, if there is one.
    static func executable(_ name: String) -> String? {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs a program to its end and returns what it wrote (standard output and error together,
    /// or output alone when `errors` is false); throws with that text when it exits non-zero.
    @discardableResult
    static func output(of executable: String, _ arguments: [String], errors: Bool = true) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = errors ? pipe : FileHandle.nullDevice
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let command = ([executable] + arguments).joined(separator: " ")
            throw InstructionsError("\(command) exited with status \(process.terminationStatus): \(output.suffix(1_000))")
        }
        return output
    }
}

/// What the relay needs to run under valgrind 3.19 (Debian 12's), made once in the scratch
/// directory, and the command line it runs under.
struct CallgrindSetup: Sendable {
    let tools: CallgrindTools
    /// A copy of the relay without its DWARF (`objcopy --strip-debug`): valgrind 3.19's reader
    /// gives up on this binary's debug information ("Possibly corrupted debuginfo file ... I can't
    /// recover") before main. Function names come from the symbol table, which stays; only file and
    /// line numbers are lost.
    let binary: String
    /// The sigsuspend shim (`shimSource`), preloaded into the relay.
    let shim: String
    let listenerSeconds: Double

    /// valgrind 3.19 writes into the signal mask a process passes to rt_sigsuspend (to keep its
    /// own signals out), and libdispatch's main thread, parked by `dispatchMain()`, passes a
    /// `static const` mask in read-only memory: valgrind dies of SIGSEGV a few seconds after the
    /// relay starts ("VALGRIND INTERNAL ERROR ... _dispatch_sigsuspend"). This sigsuspend hands
    /// the kernel a copy on the stack instead. It changes nothing else: the main thread only waits.
    static let shimSource = """
        /* Written by allegro-bench instructions (CallgrindSetup.shimSource in Instructions.swift). */
        #define _GNU_SOURCE
        #include <signal.h>
        #include <sys/syscall.h>
        #include <unistd.h>

        int sigsuspend(const sigset_t *mask) {
            sigset_t copy = *mask;
            return (int)syscall(SYS_rt_sigsuspend, &copy, (size_t)(_NSIG / 8));
        }

        """

    static func prepare(binary: String, tools: CallgrindTools, scratch: URL, listenerSeconds: Double) throws -> CallgrindSetup {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw InstructionsError("no relay at \(binary): build it with `swift build -c release` (scripts/bench does), or pass --allegro PATH")
        }
        let stripped = scratch.appendingPathComponent("allegro-nodebug").path
        try CallgrindTools.output(of: tools.objcopy, ["--strip-debug", binary, stripped])
        let source = scratch.appendingPathComponent("sigsuspend-shim.c")
        try Data(shimSource.utf8).write(to: source)
        let shim = scratch.appendingPathComponent("sigsuspend-shim.so").path
        try CallgrindTools.output(of: tools.compiler, ["-O2", "-shared", "-fPIC", "-o", shim, source.path])
        return CallgrindSetup(tools: tools, binary: stripped, shim: shim, listenerSeconds: listenerSeconds)
    }

    /// valgrind and its options, to go before the relay's path. `--instr-atstart=no`: nothing is
    /// instrumented (or counted) until `CallgrindControl.instrumentationOn()`, so the relay starts
    /// at near valgrind's plain speed (listening after about 2 s here, 3 s fully instrumented).
    /// `--collect-atstart=no` would not do: callgrind's monitor commands (dump, zero, status,
    /// instrumentation) cannot switch collection on, only `--toggle-collect` functions or client
    /// requests in the relay could, so every dump would say 0. The dumps asked for go to
    /// `<outFile>.<n>`, n from 1; the one at exit to `<outFile>`. The vgdb FIFOs go beside them.
    func launcher(outFile: URL, vgdbPrefix: String) -> [String] {
        [tools.valgrind, "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=\(outFile.path)",
         "--vgdb=yes", "--vgdb-prefix=\(vgdbPrefix)"]
    }
}

/// Callgrind's monitor commands to one running relay through vgdb: what `callgrind_control -i on`,
/// `-z` and `-d` send, but with vgdb's exit status (callgrind_control exits 0 even when no process
/// answered). vgdb returns once callgrind has carried the command out; a dump is complete then.
final class CallgrindControl {
    let vgdb: String
    let prefix: String
    let pid: Int32
    let outFile: URL
    /// Dumps made so far: callgrind numbers its dump files from 1.
    private(set) var dumps = 0

    init(vgdb: String, prefix: String, pid: Int32, outFile: URL) {
        self.vgdb = vgdb
        self.prefix = prefix
        self.pid = pid
        self.outFile = outFile
    }

    func instrumentationOn() throws { _ = try send(["instrumentation", "on"]) }

    /// Sets every count to zero; returns when (monotonic nanoseconds), as `send` does.
    func zero() throws -> UInt64 { try send(["zero"]) }

    /// Writes the counts since the last zero or dump to the next numbered file (`label` is its
    /// trigger line) and zeroes them; returns the file and when, as `send` does.
    func dump(_ label: String) throws -> (file: URL, nanos: UInt64) {
        let nanos = try send(["dump", label])
        dumps += 1
        let file = URL(fileURLWithPath: outFile.path + ".\(dumps)")
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw InstructionsError("callgrind wrote no \(file.lastPathComponent) for dump \(label)")
        }
        return (file, nanos)
    }

    /// Sends one command and returns the monotonic time halfway through: callgrind carries it out
    /// at some moment between vgdb's start and its return (usually within 100 ms: vgdb wakes a
    /// process that does not poll for it by then).
    private func send(_ words: [String]) throws -> UInt64 {
        let start = Clock.monotonicNanos
        try CallgrindTools.output(of: vgdb, ["--vgdb-prefix=\(prefix)", "--pid=\(pid)"] + words)
        return start + (Clock.monotonicNanos - start) / 2
    }
}

// MARK: The scenario

/// One window of the instructions scenario: what callgrind counted in the relay between a zero
/// and a dump, the records delivered meanwhile, and how long that took.
struct InstructionWindow {
    var instructions: UInt64
    var records: Int
    var seconds: Double
    /// The dump, for callgrind_annotate.
    var dump: URL
}

/// One workload's two windows and its report row.
struct InstructionsRun {
    let workload: AllocWorkload
    let low: InstructionWindow
    let high: InstructionWindow
    let measurement: Measurement

    /// Per record: the slope of counts per second against records per second, which for windows
    /// of equal length is (high - low) / (high records - low records), as in `allocs`; per second
    /// keeps a window that took longer (to deliver) from passing its fixed part off as per record.
    static func slope(_ lowCount: Double, _ highCount: Double, low: InstructionWindow, high: InstructionWindow) -> Double {
        let lowRate = Double(low.records) / low.seconds, highRate = Double(high.records) / high.seconds
        return (highCount / high.seconds - lowCount / low.seconds) / (highRate - lowRate)
    }

    /// The slope between this run's windows.
    func slope(_ lowCount: Double, _ highCount: Double) -> Double { Self.slope(lowCount, highCount, low: low, high: high) }
}

extension Scenarios {
    /// Starts the relay under callgrind (nothing instrumented yet) with a durable collector and
    /// the workload's producers, switches instrumentation on, sends at the high rate (warm-up),
    /// then runs a window at the low rate and one at the high rate: zero the counts, send for
    /// `windows.seconds`, wait until the collector has every record sent (it is given only
    /// records the relay has fsync'd), dump. So each window holds the whole work of its records,
    /// and nothing of another window's.
    static func instructions(_ workload: AllocWorkload, windows: AllocWindows, setup: CallgrindSetup, size: Int,
                             scratch: URL) throws -> InstructionsRun {
        let directory = scratch.appendingPathComponent("callgrind-\(workload.name)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let outFile = directory.appendingPathComponent("callgrind.out"), vgdbPrefix = directory.appendingPathComponent("vgdb").path
        let relay = AllegroPeer(binary: setup.binary, extra: ["--durable", AllocWorkload.collectorName], name: workload.name,
                                environment: ["LD_PRELOAD": setup.shim], launcher: setup.launcher(outFile: outFile, vgdbPrefix: vgdbPrefix),
                                listenerSeconds: setup.listenerSeconds)
        // Before start: a relay that never listens still has a valgrind to stop.
        defer { relay.stop() }
        do {
            try relay.start(scratch: directory)
        } catch {
            throw InstructionsError("\(workload.name): the relay under valgrind did not listen (\(error)); its log ends:\n"
                                    + logTail(directory.appendingPathComponent("allegro.log")))
        }
        guard let pid = relay.pid else { throw InstructionsError("the relay has no process id") }
        let control = CallgrindControl(vgdb: setup.tools.vgdb, prefix: vgdbPrefix, pid: pid, outFile: outFile)
        let collector = try CountingCollector(address: relay.address, name: AllocWorkload.collectorName)
        defer { collector.stop() }
        let producers = try sessionProducers(workload.producers, address: relay.address)
        try control.instrumentationOn()
        var sent = try drive(producers, rate: windows.highRate, seconds: windows.warmupSeconds, size: size)
        try awaitDelivery(collector, sent: sent, what: "\(workload.name) warm-up")

        func window(rate: Int, label: String) throws -> InstructionWindow {
            let receivedBefore = collector.received
            let start = try control.zero()
            sent += try drive(producers, rate: rate, seconds: windows.seconds, size: size)
            try awaitDelivery(collector, sent: sent, what: "\(workload.name) \(label) window")
            let records = collector.received - receivedBefore
            let (dump, end) = try control.dump(label)
            let seconds = Double(end - start) / 1e9
            noteSlowDelivery(workload, rate: rate, sentSeconds: windows.seconds, windowSeconds: seconds)
            return InstructionWindow(instructions: try CallgrindDump.totalInstructions(dump), records: records, seconds: seconds, dump: dump)
        }
        let low = try window(rate: windows.lowRate, label: "low")
        let high = try window(rate: windows.highRate, label: "high")
        // Producer connections stay open until everything arrived: closing one drops what the
        // relay has not read yet.
        withExtendedLifetime(producers) {}
        return try instructionsRun(workload, low: low, high: high, windows: windows, size: size, sent: sent,
                                   received: collector.received)
    }

    /// The report row: instructions per record (the slope), fixed instructions per second (the
    /// intercept), and the windows' own numbers.
    private static func instructionsRun(_ workload: AllocWorkload, low: InstructionWindow, high: InstructionWindow,
                                        windows: AllocWindows, size: Int, sent: Int, received: Int) throws -> InstructionsRun {
        let lowRate = Double(low.records) / low.seconds, highRate = Double(high.records) / high.seconds
        guard highRate > lowRate else {
            throw InstructionsError("\(workload.name): the high window delivered \(Int(highRate)) records/s, the low one \(Int(lowRate))")
        }
        let lowCount = Double(low.instructions), highCount = Double(high.instructions)
        let perRecord = InstructionsRun.slope(lowCount, highCount, low: low, high: high)
        let measurement = Measurement(
            scenario: "instructions", peer: workload.name,
            parameters: ["producers": Double(workload.producers), "low_rate": Double(windows.lowRate),
                         "high_rate": Double(windows.highRate), "seconds": windows.seconds, "size": Double(size)],
            results: ["instructions_per_record": perRecord, "fixed_instructions_per_s": lowCount / low.seconds - perRecord * lowRate,
                      "high_instructions_per_record": highCount / Double(max(high.records, 1)),
                      "low_instructions": lowCount, "low_records": Double(low.records), "low_window_s": low.seconds,
                      "high_instructions": highCount, "high_records": Double(high.records), "high_window_s": high.seconds,
                      "sent": Double(sent), "received": Double(received)])
        return InstructionsRun(workload: workload, low: low, high: high, measurement: measurement)
    }

    /// `count` producers as Hermes's: each with a session of its own, one record per PUBLISH (as
    /// the allocs scenario has them, so the two scenarios measure the same work).
    private static func sessionProducers(_ count: Int, address: String) throws -> [AllegroProducer] {
        try (0 ..< count).map { index in
            let producer = try AllegroProducer(address, id: String(format: "hermes-%02d", index))
            producer.session = Array(String(format: "hermes-session-%02d", index).utf8)
            producer.kind = Array("tool.call".utf8)
            producer.recordsPerFrame = 1
            return producer
        }
    }

    /// Waits until the collector has `sent` records; throws after `AllocWindows.deliverySeconds`.
    private static func awaitDelivery(_ collector: CountingCollector, sent: Int, what: String) throws {
        guard try collector.waitForRecords(sent, seconds: AllocWindows.deliverySeconds) else {
            throw InstructionsError("\(what): \(collector.received) of \(sent) records arrived within "
                                    + "\(Int(AllocWindows.deliverySeconds)) s of the last: try a lower --high-rate")
        }
    }

    /// Says so (on standard error) when the relay took more than a second past the window's
    /// sending to deliver its records: it did not keep up under callgrind. The slope still holds
    /// (records/s is what it delivered over the whole window), but then it measures a saturated
    /// relay, whose batches are larger than at that rate without valgrind.
    private static func noteSlowDelivery(_ workload: AllocWorkload, rate: Int, sentSeconds: Double, windowSeconds: Double) {
        guard windowSeconds > sentSeconds + 1 else { return }
        let times = String(format: "%.1f s sending, %.1f s until delivered", sentSeconds, windowSeconds)
        let note = "allegro-bench: \(workload.name) at \(rate)/s: \(times) (the relay under callgrind fell behind)\n"
        FileHandle.standardError.write(Data(note.utf8))
    }

    /// The last lines of a log, for an error message.
    private static func logTail(_ log: URL) -> String {
        guard let data = FileManager.default.contents(atPath: log.path) else { return "(no log)" }
        return String(String(decoding: data, as: UTF8.self).suffix(2_000))
    }
}

// MARK: Reading callgrind's files

/// Reading callgrind's output.
enum CallgrindDump {
    /// Total instructions (Ir) in one dump: its `summary:` line, which callgrind_annotate reports
    /// as the program's totals; else its `totals:` line, the sum of the file's cost lines (the two
    /// can differ by a few instructions). Only Ir is collected, so it is the first number.
    static func totalInstructions(_ file: URL) throws -> UInt64 {
        let text = String(decoding: try Data(contentsOf: file), as: UTF8.self)
        var totals: UInt64?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("summary:"), let value = firstNumber(line.dropFirst("summary:".count)) { return value }
            if line.hasPrefix("totals:") { totals = firstNumber(line.dropFirst("totals:".count)) }
        }
        guard let totals else { throw InstructionsError("no summary or totals line in \(file.path)") }
        return totals
    }

    private static func firstNumber(_ text: Substring) -> UInt64? {
        text.split(separator: " ").first.flatMap { UInt64($0) }
    }

    /// Instructions per function in one dump, keyed by `file:function [object]` as
    /// callgrind_annotate prints them (every function: threshold 100 %).
    static func functions(_ file: URL, annotate: String, inclusive: Bool) throws -> [String: UInt64] {
        let output = try CallgrindTools.output(of: annotate, ["--auto=no", "--threshold=100", "--inclusive=\(inclusive ? "yes" : "no")", file.path],
                                               errors: false)
        var costs: [String: UInt64] = [:]
        var inTable = false
        for line in output.split(separator: "\n") {
            if line.contains("file:function") { inTable = true; continue }
            guard inTable, let entry = functionLine(line) else { continue }
            costs[entry.key, default: 0] += entry.instructions
        }
        return costs
    }

    /// `  1,234,567 (12.34%)  file:function [object]`: the key (`file:function [object]`) and the count.
    static func functionLine(_ line: Substring) -> (key: String, instructions: UInt64)? {
        let trimmed = line.drop { $0 == " " }
        let digits = trimmed.prefix { ("0" ... "9").contains($0) || $0 == "," }
        guard !digits.isEmpty, let count = UInt64(digits.filter { $0 != "," }) else { return nil }
        var rest = trimmed.dropFirst(digits.count).drop { $0 == " " }
        if rest.first == "(", let close = rest.firstIndex(of: ")") { rest = rest[rest.index(after: close)...].drop { $0 == " " } }
        return rest.isEmpty ? nil : (String(rest), count)
    }

    /// A key's function (after the file's `:`) and its object's file name (in the brackets).
    static func nameAndObject(_ key: String) -> (name: String, object: String) {
        var body = Substring(key), object = ""
        if key.hasSuffix("]"), let open = key.range(of: " [", options: .backwards) {
            object = URL(fileURLWithPath: String(key[open.upperBound ..< key.index(before: key.endIndex)])).lastPathComponent
            body = key[..<open.lowerBound]
        }
        let name = body.firstIndex(of: ":").map { body[body.index(after: $0)...] } ?? body
        return (String(name), object)
    }
}

/// Where one workload's instructions went: the functions with the most in the high window, per
/// record, beside their slope (the part that grows with records, from both windows).
struct FunctionListing {
    /// One function's line.
    struct Row {
        var name: String
        var object: String
        var highPerRecord: Double
        var slopePerRecord: Double
        /// Of the high window's instructions.
        var share: Double
    }

    let title: String
    let rows: [Row]

    static func make(_ run: InstructionsRun, tools: CallgrindTools, inclusive: Bool, top: Int) throws -> FunctionListing {
        let low = try CallgrindDump.functions(run.low.dump, annotate: tools.annotate, inclusive: inclusive)
        let high = try CallgrindDump.functions(run.high.dump, annotate: tools.annotate, inclusive: inclusive)
        let ranked = high.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(top)
        let parts = ranked.map { CallgrindDump.nameAndObject($0.key) }
        let names = demangled(parts.map(\.name), swift: tools.swift)
        let rows = ranked.indices.map { index in
            let entry = ranked[index], offset = index - ranked.startIndex
            let highCount = Double(entry.value)
            return Row(name: names[offset], object: parts[offset].object, highPerRecord: highCount / Double(max(run.high.records, 1)),
                       slopePerRecord: run.slope(Double(low[entry.key] ?? 0), highCount),
                       share: highCount / Double(max(run.high.instructions, 1)))
        }
        let kind = inclusive ? "inclusive" : "own (self)"
        let title = "## instructions: \(run.workload.name), top \(rows.count) functions by \(kind) instructions per record "
            + "in the high window (\(run.high.records) records)"
        return FunctionListing(title: title, rows: rows)
    }

    func lines() -> [String] {
        [title, "per_record | slope_per_record | share | function [object]"] + rows.map { row in
            String(format: "%.1f | %.1f | %.1f%% | ", row.highPerRecord, row.slopePerRecord, row.share * 100)
                + String(row.name.prefix(200)) + (row.object.isEmpty ? "" : " [\(row.object)]")
        }
    }

    /// Swift names through `swift demangle --simplified --compact` (one line out per name in),
    /// keeping callgrind's recursion suffix (`'2`); other names as they are (it would put a `$`
    /// before some), and all of them as they are when swift is missing or fails.
    static func demangled(_ names: [String], swift: String?) -> [String] {
        func isSwift(_ name: String) -> Bool { name.hasPrefix("$s") || name.hasPrefix("_$s") || name.hasPrefix("$S") }
        let parts = names.map(withoutRecursion)
        let mangled = parts.map(\.base).filter(isSwift)
        guard let swift, !mangled.isEmpty,
              let output = try? CallgrindTools.output(of: swift, ["demangle", "--simplified", "--compact"] + mangled, errors: false)
        else { return names }
        var plain = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if plain.last == "" { plain.removeLast() }
        guard plain.count == mangled.count else { return names }
        var next = plain.makeIterator()
        return zip(names, parts).map { name, part in isSwift(part.base) ? (next.next() ?? part.base) + part.suffix : name }
    }

    /// A callgrind function name without the `'N` it adds for the Nth level of a recursion, and
    /// that suffix (empty when there is none).
    static func withoutRecursion(_ name: String) -> (base: String, suffix: String) {
        guard let quote = name.lastIndex(of: "'") else { return (name, "") }
        let digits = name[name.index(after: quote)...]
        guard !digits.isEmpty, digits.allSatisfy({ ("0" ... "9").contains($0) }) else { return (name, "") }
        return (String(name[..<quote]), String(name[quote...]))
    }
}

extension Report {
    /// The instructions rows as `Report.print` lays out a scenario's table (its list of scenarios
    /// does not name this one, which runs only on its own).
    static func printInstructions(_ rows: [Measurement]) {
        Swift.print("machine: " + machine().sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        guard let first = rows.first else { return }
        let parameterKeys = first.parameters.keys.sorted(), resultKeys = first.results.keys.sorted()
        Swift.print("\n## instructions")
        Swift.print((["peer"] + parameterKeys + resultKeys).joined(separator: " | "))
        for row in rows {
            let values = parameterKeys.map { format(row.parameters[$0] ?? 0) } + resultKeys.map { format(row.results[$0] ?? 0) }
            Swift.print(([row.peer] + values).joined(separator: " | "))
        }
    }
}
