import AllegroLog
import AllegroPosix
import AsyncHTTPClient
import Foundation

/// Keeps one service running until asked to stop: starts it, watches it end or fail its probe,
/// waits as its `RestartSchedule` says, starts it again, for ever. Every start, end, probe result
/// and timer is an event on one queue, handled in order by `run()`, which alone holds the
/// service's state; events of an earlier run (a late timer, a late probe) are told apart by the
/// run's generation and ignored. A command is started by the supervisor (`CommandRun`); a
/// systemd unit is watched through `systemctl show` and restarted through `systemctl restart`,
/// and left running when the supervisor stops.
final class ServiceKeeper: Sendable {
    enum Event: Sendable {
        case exited(Int, SpawnedProcess.Exit)
        case failedToStart(Int, String)
        case probe(Int, Probe.Result)
        case settled(Int)
        case healthyDue(Int)
        case restartDue(Int)
        case unit(Int, UnitState)
        case stop
    }

    let spec: ServiceSpec
    let policy: RestartPolicy
    let board: SupervisorBoard
    let reporter: SupervisorReporter
    let ledger: ChildLedger
    let http: HTTPClient
    let systemdPollMillis: Int
    let log: EventLog
    private let events: AsyncStream<Event>
    private let sink: AsyncStream<Event>.Continuation
    /// A service without a probe counts as up once it has run this long.
    static let settleMillis = 1_000
    /// The first probe of a run comes this soon (later ones at the probe's interval).
    static let firstProbeMillis = 200

    init(spec: ServiceSpec, policy: RestartPolicy, board: SupervisorBoard, reporter: SupervisorReporter, ledger: ChildLedger,
         http: HTTPClient, systemdPollMillis: Int, log: EventLog) {
        self.spec = spec
        self.policy = policy
        self.board = board
        self.reporter = reporter
        self.ledger = ledger
        self.http = http
        self.systemdPollMillis = systemdPollMillis
        self.log = log
        (events, sink) = AsyncStream.makeStream(of: Event.self)
    }

    /// Ends `run()`: a command is stopped (SIGTERM, its grace, SIGKILL), a unit left as it is.
    func requestStop() { sink.yield(.stop) }

    var kind: String { if case .systemd = spec.kind { "systemd" } else { "command" } }

    static var nowMillis: Int64 { Int64(Clock.monotonicNanos / 1_000_000) }

    /// The service's state, owned by `run()`.
    private struct State {
        var schedule: RestartSchedule
        var tracker: ProbeTracker?
        var generation = 0
        var command: CommandRun?
        var startedAt: Int64 = 0
        var helpers: [Task<Void, Never>] = []
        /// Why the supervisor itself stopped the current run (its probe failed).
        var stopReason: String?
        /// Since when the service is down, while it is (`service_down` firing).
        var downSince: Int64?
        /// While `service_unhealthy` fires: until a probe passes, after the restart it caused.
        var unhealthyFiring = false
        var unitUp = false
    }

    func run() async {
        var state = State(schedule: RestartSchedule(policy: policy), tracker: spec.probe.map(ProbeTracker.init))
        board.update(spec.name, kind: kind) { $0.state = "starting" }
        start(&state, first: true)
        for await event in events {
            switch event {
            case .stop:
                await stop(&state)
                sink.finish()
                return
            case let .exited(generation, exit) where generation == state.generation:
                ended(&state, why: state.stopReason ?? exit.description, status: exit.status)
            case let .failedToStart(generation, reason) where generation == state.generation:
                ended(&state, why: "could not start: \(reason)", status: nil)
                board.update(spec.name, kind: kind) { $0.state = "failed_to_start" }
            case let .probe(generation, result) where generation == state.generation:
                probed(&state, result)
            case let .settled(generation) where generation == state.generation:
                if state.tracker == nil && (state.command != nil || state.unitUp) { becameUp(&state) }
            case let .healthyDue(generation) where generation == state.generation:
                if state.tracker.map({ $0.passed && !$0.unhealthy }) ?? true {
                    if state.schedule.healthy() {
                        board.update(spec.name, kind: kind) { $0.crashLooping = false }
                        reporter.alert("service_crash_looping", subject: spec.name, .resolved, .critical,
                                       summary: "\(spec.name) has run healthy for \(SupervisorReporter.duration(Int64(policy.healthyMillis)))", sinceMillis: wallMillis)
                    }
                } else {
                    after(policy.healthyMillis, .healthyDue(generation))
                }
            case let .restartDue(generation) where generation == state.generation:
                board.update(spec.name, kind: kind) { $0.restarts += 1; $0.backoffSeconds = 0 }
                start(&state, first: false)
            case let .unit(generation, unit) where generation == state.generation:
                watched(&state, unit)
            default:
                continue  // an event of an earlier run
            }
        }
    }

    // MARK: Starting and stopping

    private func start(_ state: inout State, first: Bool) {
        for helper in state.helpers { helper.cancel() }
        state.helpers = []
        state.generation += 1
        state.startedAt = Self.nowMillis
        state.stopReason = nil
        state.tracker?.started()
        let generation = state.generation
        board.update(spec.name, kind: kind) { $0.state = "starting"; $0.probeFailures = 0 }
        switch spec.kind {
        case let .command(arguments):
            guard let program = Executable.resolve(arguments[0]) else {
                sink.yield(.failedToStart(generation, "\(arguments[0]) is not an executable file (nor on PATH)"))
                return
            }
            do {
                let environment = Executable.environment(spec.environment, pass: spec.passEnvironment, withheld: spec.withheldPrefixes)
                let command = try CommandRun.start(service: spec.name, executable: program.executable,
                                                   arguments: [program.argument0] + arguments.dropFirst(), environment: environment,
                                                   directory: spec.directory, log: log)
                state.command = command
                ledger.started(spec.name, pid: command.process.pid)
                board.update(spec.name, kind: kind) { $0.pid = command.process.pid }
                let sink = sink
                state.helpers.append(Task {
                    let exit = await command.exited()
                    sink.yield(.exited(generation, exit))
                })
            } catch {
                sink.yield(.failedToStart(generation, "\(error)"))
                return
            }
        case let .systemd(unit):
            let sink = sink
            let pollMillis = systemdPollMillis
            state.helpers.append(Task {
                if !first {
                    do { try await Systemctl().restart(unit) } catch {
                        sink.yield(.failedToStart(generation, "\(error)"))
                        return
                    }
                }
                while !Task.isCancelled {
                    if let unitState = try? await Systemctl().show(unit) { sink.yield(.unit(generation, unitState)) }
                    try? await Task.sleep(for: .milliseconds(pollMillis))
                }
            })
        }
        after(Self.settleMillis, .settled(generation))
        after(policy.healthyMillis, .healthyDue(generation))
        if let probe = spec.probe {
            let sink = sink
            let runner = Probe(spec: probe, http: http)
            state.helpers.append(Task {
                try? await Task.sleep(for: .milliseconds(Self.firstProbeMillis))
                while !Task.isCancelled {
                    let result = await runner.run()
                    guard !Task.isCancelled else { return }
                    sink.yield(.probe(generation, result))
                    try? await Task.sleep(for: .milliseconds(probe.intervalMillis))
                }
            })
        }
    }

    /// The run ended (or never began): report, and schedule the next start.
    private func ended(_ state: inout State, why: String, status: Int32?) {
        for helper in state.helpers { helper.cancel() }
        state.helpers = []
        if state.command != nil { ledger.ended(spec.name) }
        state.command = nil
        state.unitUp = false
        let now = Self.nowMillis
        let ran = now - state.startedAt
        if state.downSince == nil {
            state.downSince = wallMillis
            reporter.alert("service_down", subject: spec.name, .firing, .warning, summary: "\(spec.name) stopped: \(why)", sinceMillis: wallMillis)
        }
        let decision = state.schedule.stopped(atMillis: now, random: Double.random(in: 0 ..< 1))
        if decision.crashLoopBegan {
            reporter.alert("service_crash_looping", subject: spec.name, .firing, .critical,
                           summary: "\(spec.name) was restarted more than \(policy.intensityRestarts) times in \(SupervisorReporter.duration(Int64(policy.intensityWindowMillis))); it is retried every \(SupervisorReporter.duration(Int64(policy.maxDelayMillis)))",
                           details: "Last stop: \(why)", sinceMillis: wallMillis)
        }
        let looping = state.schedule.crashLooping
        board.update(spec.name, kind: kind) { status_ in
            status_.state = "backoff"
            status_.pid = nil
            status_.lastExit = why
            if let status { status_.lastExitStatus = status }
            status_.backoffSeconds = Double(decision.delayMillis) / 1000
            status_.crashLooping = looping
        }
        reporter.restart(service: spec.name, why: why, ranMillis: ran, delayMillis: decision.delayMillis, restarts: state.schedule.streak,
                         crashLooping: looping)
        // The run is over: its timers and probes (same generation) must not speak for the next.
        state.generation += 1
        after(decision.delayMillis, .restartDue(state.generation))
    }

    private func stop(_ state: inout State) async {
        for helper in state.helpers { helper.cancel() }
        state.helpers = []
        // No longer supervised here (removed by a reload, or the supervisor stops): nothing of it
        // may stay firing at Timmy for ever.
        if let since = state.downSince {
            reporter.alert("service_down", subject: spec.name, .resolved, .warning, summary: "\(spec.name) is no longer supervised here", sinceMillis: since)
        }
        if state.unhealthyFiring {
            reporter.alert("service_unhealthy", subject: spec.name, .resolved, .warning, summary: "\(spec.name) is no longer supervised here", sinceMillis: wallMillis)
        }
        if state.schedule.crashLooping {
            reporter.alert("service_crash_looping", subject: spec.name, .resolved, .critical, summary: "\(spec.name) is no longer supervised here", sinceMillis: wallMillis)
        }
        guard let command = state.command else {
            board.update(spec.name, kind: kind) { $0.state = "stopped"; $0.backoffSeconds = 0 }
            return
        }
        board.update(spec.name, kind: kind) { $0.state = "stopping" }
        log.log(.info, "service_stopping", ["service": spec.name, "pid": String(command.process.pid), "grace_ms": String(spec.stopGraceMillis)])
        let exit = await command.stop(graceMillis: spec.stopGraceMillis)
        ledger.ended(spec.name)
        state.command = nil
        log.log(.info, "service_stopped", ["service": spec.name, "exit": exit.description])
        board.update(spec.name, kind: kind) { $0.state = "stopped"; $0.pid = nil; $0.lastExit = exit.description; $0.lastExitStatus = exit.status }
    }

    // MARK: Health

    private func probed(_ state: inout State, _ result: Probe.Result) {
        guard var tracker = state.tracker else { return }
        let change = tracker.record(ok: result.ok, reason: result.reason, atMillis: Self.nowMillis, startedAtMillis: state.startedAt)
        state.tracker = tracker
        board.update(spec.name, kind: kind) { $0.probeLatencySeconds = result.seconds; $0.probeFailures = tracker.streak }
        if result.ok && (state.command != nil || state.unitUp) { becameUp(&state) }
        switch change {
        case .none:
            if !result.ok { log.log(.notice, "probe_failed", ["service": spec.name, "reason": result.reason, "in_a_row": String(tracker.streak)]) }
        case .recovered:
            break  // told by becameUp, like a pass after the restart a failing probe caused
        case let .becameUnhealthy(reason):
            state.unhealthyFiring = true
            reporter.alert("service_unhealthy", subject: spec.name, .firing, .warning,
                           summary: "\(spec.name) failed its probe \(tracker.streak) times in a row: \(reason)", sinceMillis: wallMillis)
            state.stopReason = "probe failing (\(reason))"
            board.update(spec.name, kind: kind) { $0.state = "unhealthy" }
            if let command = state.command {
                let grace = spec.stopGraceMillis
                Task { _ = await command.stop(graceMillis: grace) }      // its exit comes as an event
            } else if case .systemd = spec.kind {
                ended(&state, why: state.stopReason ?? "probe failing", status: nil)
            }
        }
    }

    /// Running (and passing its probe, if it has one).
    private func becameUp(_ state: inout State) {
        board.update(spec.name, kind: kind) { if $0.state != "unhealthy" { $0.state = "running" } }
        if state.unhealthyFiring && state.tracker?.unhealthy != true {
            state.unhealthyFiring = false
            reporter.alert("service_unhealthy", subject: spec.name, .resolved, .warning, summary: "\(spec.name) passes its probe again", sinceMillis: wallMillis)
        }
        if let since = state.downSince {
            state.downSince = nil
            reporter.alert("service_down", subject: spec.name, .resolved, .warning, summary: "\(spec.name) is running again", sinceMillis: since)
        }
    }

    private func watched(_ state: inout State, _ unit: UnitState) {
        board.update(spec.name, kind: kind) { $0.unitState = "\(unit.activeState)/\(unit.subState)" }
        if unit.isUp {
            state.unitUp = true
            if state.tracker == nil { becameUp(&state) }
        } else if unit.isDown {
            let why = "unit \(unit.activeState) (\(unit.subState)), result \(unit.result), exit status \(unit.execMainStatus)"
            ended(&state, why: why, status: Int32(clamping: unit.execMainStatus))
        }
    }

    private func after(_ millis: Int, _ event: Event) {
        let sink = sink
        Task {
            try? await Task.sleep(for: .milliseconds(millis))
            sink.yield(event)
        }
    }

    private var wallMillis: Int64 { Int64(Clock.wallNanos / 1_000_000) }
}
