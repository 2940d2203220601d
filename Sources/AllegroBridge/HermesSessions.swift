import AllegroApproval
import AllegroLog
import AllegroMessages
import AllegroPosix
import Foundation

/// Runs Timmy's Hermes sessions through the gateway's API server: the `HermesSessionQueue`
/// decides what runs; this actor starts each run, follows its events to the end, stops it past
/// `hermes.session_timeout_ms` or when Timmy cancels, and keeps the outcome for Timmy to read.
/// It never decides on Hermes' output, nor on Hermes' approval requests: each goes to Timmy as
/// an Allegro Request (and an alert, `hermes_approval_pending`) on the stream, and Hermes is
/// answered only with Timmy's signed approval of exactly that command (`hermes_approve`) or a
/// denial; no answer before `hermes.approval_timeout_ms` is a denial.
actor HermesSessions {
    let settings: HermesSettings
    let api: HermesAPIClient
    /// Timmy's approvals; nil (no `hermes.allowed_signers`): only denials are possible.
    let gate: ApprovalGate?
    let store: BridgeStore
    let publisher: OutboxPublisher
    let log: EventLog
    private var queue: HermesSessionQueue
    /// How each running session's events said it ended, until `run` finishes it.
    private var outcomes: [String: HermesSessionQueue.State] = [:]

    /// How often a run's status is read when its event stream ended early.
    static let statusPollMillis = 500
    /// Timmy's calls waiting for a session to end, woken when it does (or at their time).
    private var waiters: [String: [Int: CheckedContinuation<Void, Never>]] = [:]
    private var nextWaiter = 0
    /// A limit on everything: calls waiting at once (each holds an HTTP request open).
    static let maxWaiters = 1_024

    /// An approval Hermes asked for, waiting for Timmy.
    struct PendingApproval: Sendable {
        var request: String
        var session: String
        var runID: String
        var command: String
        var description: String
        var commandSHA256: String
        var deadlineWallMillis: Int64
    }

    private var pending: [String: PendingApproval] = [:]
    /// Approvals asked per run, for their request ids.
    private var asked: [String: Int] = [:]
    /// A limit on everything: approvals waiting at once (each holds a run still).
    static let maxPending = 256
    /// The longest command shown to Timmy (in a Request, whole); a longer one is denied.
    static let maxCommandBytes = 16 << 10

    init(settings: HermesSettings, api: HermesAPIClient, gate: ApprovalGate?, store: BridgeStore, publisher: OutboxPublisher, log: EventLog) {
        self.settings = settings
        self.api = api
        self.gate = gate
        self.store = store
        self.publisher = publisher
        self.log = log
        queue = HermesSessionQueue(maxRunning: settings.maxSessions, maxQueued: settings.maxQueued,
                                   keepMillis: Int64(settings.keepResultsMillis), maxKept: HermesSettings.maxKeptResults)
    }

    private static var nowMillis: Int64 { Int64(Clock.monotonicNanos / 1_000_000) }

    // MARK: Timmy's calls

    func submit(id: String, prompt: String, model: String?) throws(CommandError) -> HermesSessionQueue.Session {
        queue.forget(atMillis: Self.nowMillis)
        let session: HermesSessionQueue.Session
        do { session = try queue.submit(id: id, prompt: prompt, model: model, atMillis: Self.nowMillis) } catch {
            switch error {
            case .conflict: throw CommandError(status: 409, reason: "operation_id \(id) was used for another prompt or model")
            case .queueFull: throw CommandError(status: 429, reason: "\(settings.maxQueued) sessions wait already (hermes.max_queued); ask again later")
            }
        }
        pump()
        return queue.sessions[id] ?? session
    }

    func session(_ id: String) -> HermesSessionQueue.Session? { queue.sessions[id] }

    /// The session once it has ended, or as it is after `waitMillis`.
    func wait(_ id: String, upToMillis waitMillis: Int) async -> HermesSessionQueue.Session? {
        guard let session = queue.sessions[id], !session.state.ended, waitMillis > 0,
              waiters.values.reduce(0, { $0 + $1.count }) < Self.maxWaiters else { return queue.sessions[id] }
        nextWaiter += 1
        let token = nextWaiter
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(waitMillis))
            await self.wake(id, token: token)
        }
        // The closure runs on this actor before it suspends, so the timer cannot wake it first.
        await withCheckedContinuation { continuation in waiters[id, default: [:]][token] = continuation }
        timer.cancel()
        return queue.sessions[id]
    }

    private func wake(_ id: String, token: Int) {
        waiters[id]?.removeValue(forKey: token)?.resume()
        if waiters[id]?.isEmpty == true { waiters[id] = nil }
    }

    /// The session ended: every call waiting for it answers now.
    private func ended(_ id: String) {
        for continuation in (waiters.removeValue(forKey: id) ?? [:]).values { continuation.resume() }
    }

    func cancel(_ id: String) async throws(CommandError) -> HermesSessionQueue.Session {
        switch queue.cancel(id, atMillis: Self.nowMillis) {
        case .unknown: throw CommandError(status: 404, reason: "no session \(id) (or it ended long ago and was forgotten)")
        case .dropped:
            log.log(.info, "hermes_session_cancelled", ["session": id, "state": "queued"])
            ended(id)
            pump()
        case let .stop(runID?):
            log.log(.info, "hermes_session_cancelled", ["session": id, "run": runID])
            await stop(id: id, runID: runID)
        case .stop(nil), .alreadyEnded:
            break  // starting: stopped as soon as its run id is known
        }
        return queue.sessions[id] ?? HermesSessionQueue.Session(id: id, prompt: "", submittedMillis: 0)
    }

    // MARK: Approvals

    /// The approvals waiting for Timmy, oldest first.
    func pendingApprovals() -> [PendingApproval] {
        pending.values.sorted { $0.request < $1.request }
    }

    /// Timmy's signed approval of `request`: Hermes runs the command, once.
    func approve(_ request: String, statement: String, signature: String) async throws(CommandError) -> PendingApproval {
        guard let waiting = pending[request] else {
            throw CommandError(status: 404, reason: "no approval \(request) is waiting (answered, past its deadline, or never asked)")
        }
        guard let gate else {
            throw CommandError(status: 403, reason: "hermes.allowed_signers is empty: this bridge takes no approvals, only denials")
        }
        _ = try gate.approve(HermesApproval(request: request, commandSHA256: waiting.commandSHA256), statement: statement, signature: signature,
                             resuming: false)
        await decide(request, approve: true, why: "approved by Timmy (signed)")
        return waiting
    }

    func deny(_ request: String) async throws(CommandError) -> PendingApproval {
        guard let waiting = pending[request] else {
            throw CommandError(status: 404, reason: "no approval \(request) is waiting (answered, past its deadline, or never asked)")
        }
        await decide(request, approve: false, why: "denied by Timmy")
        return waiting
    }

    /// Hermes asks: Timmy is told (a Request and an alert on the stream) and the deadline set.
    private func ask(command: String, description: String, id: String, runID: String) async {
        let number = (asked[runID] ?? 0) + 1
        asked[runID] = number
        let request = "hermes-\(runID)-\(number)"
        let hash = Hex.sha256(command)
        let deadline = Int64(Clock.wallNanos / 1_000_000) + Int64(settings.approvalTimeoutMillis)
        queue.update(id) { $0.approvals.append(.init(request: request, command: command, description: description, decision: "pending", why: "asked Timmy")) }
        guard gate != nil, pending.count < Self.maxPending, command.utf8.count <= Self.maxCommandBytes else {
            let why = gate == nil ? "denied: hermes.allowed_signers is empty, so no approval is possible here"
                : pending.count < Self.maxPending ? "denied: the command is longer than \(Self.maxCommandBytes >> 10) KiB, too long to show Timmy whole"
                : "denied: \(Self.maxPending) approvals wait already"
            log.log(.warning, "hermes_approval_denied", ["session": id, "request": request, "why": why])
            await answer(runID: runID, session: id, request: request, approve: false, why: why)
            return
        }
        let waiting = PendingApproval(request: request, session: id, runID: runID, command: command, description: description,
                                      commandSHA256: hash, deadlineWallMillis: deadline)
        pending[request] = waiting
        log.log(.warning, "hermes_approval_asked", ["session": id, "run": runID, "request": request, "description": description])
        tellTimmy(waiting)
        let timeout = settings.approvalTimeoutMillis
        Task {
            try? await Task.sleep(for: .milliseconds(timeout))
            await self.decide(request, approve: false, why: "no answer from Timmy within hermes.approval_timeout_ms (\(timeout) ms)")
        }
    }

    /// The one answer to a pending approval (the first of Timmy's answer and the deadline).
    private func decide(_ request: String, approve: Bool, why: String) async {
        guard let waiting = pending.removeValue(forKey: request) else { return }
        log.log(approve ? .info : .warning, approve ? "hermes_approval_approved" : "hermes_approval_denied",
                ["session": waiting.session, "request": request, "why": why])
        publish(AllegroAlert.kind, request, try? AllegroAlert(alert: "hermes_approval_pending", subject: request, status: .resolved, severity: .warning,
                                                               summary: "\(approve ? "Approved" : "Denied"): \(why)", details: "",
                                                               sinceMillis: Int64(Clock.wallNanos / 1_000_000)).json)
        await answer(runID: waiting.runID, session: waiting.session, request: request, approve: approve, why: why)
    }

    private func answer(runID: String, session: String, request: String, approve: Bool, why: String) async {
        queue.update(session) { session in
            if let index = session.approvals.lastIndex(where: { $0.request == request }) {
                session.approvals[index].decision = approve ? "approve" : "deny"
                session.approvals[index].why = why
            }
        }
        do { try await api.answerApproval(runID: runID, choice: approve ? "once" : "deny") } catch {
            log.log(.warning, "hermes_approval_not_answered", ["session": session, "run": runID, "request": request, "reason": error.description])
        }
    }

    /// The Request (what to approve, how, by when) and the alert that it waits.
    private func tellTimmy(_ waiting: PendingApproval) {
        let deadline = UTCTimestamp.text(waiting.deadlineWallMillis / 1000)
        let question = "Hermes asks to run this command (\(waiting.description)):\n\n" + waiting.command
            + "\n\nrequest=\(waiting.request)\ncommand_sha256=\(waiting.commandSHA256)"
        let request = try? AllegroRequest(
            type: .approval, urgency: .high,
            context: "Hermes session \(waiting.session) (run \(waiting.runID)) waits for approval \(waiting.request)",
            question: question,
            options: ["approve: sign hermes_approve for this request and command_sha256", "deny"],
            recommendation: "None: Allegro does not decide. Hermes flagged the command as: \(waiting.description)",
            timeConstraint: "Answer before \(deadline); no answer by then is a denial.")
        if request == nil { log.log(.error, "hermes_request_not_made", ["request": waiting.request]) }
        publish("allegro.request", waiting.request, request?.json)
        publish(AllegroAlert.kind, waiting.request, try? AllegroAlert(
            alert: "hermes_approval_pending", subject: waiting.request, status: .firing, severity: .warning,
            summary: "Hermes waits for Timmy's approval to run: \(String(waiting.command.prefix(200)).replacingOccurrences(of: "\n", with: " "))",
            details: "Flagged as: \(waiting.description)\nDeadline: \(deadline)", sinceMillis: Int64(Clock.wallNanos / 1_000_000)).json)
    }

    private func publish(_ kind: String, _ session: String, _ payload: String?) {
        guard let payload else { return }
        do {
            try store.enqueueRecords([(kind, session, payload)], nowMillis: Int64(Clock.wallNanos / 1_000_000))
            publisher.poke()
        } catch {
            log.log(.error, "hermes_record_not_published", ["kind": kind, "reason": "\(error)"])
        }
    }

    // MARK: Running

    private func pump() {
        for session in queue.startable(atMillis: Self.nowMillis) {
            Task { await self.run(session) }
        }
    }

    private func run(_ session: HermesSessionQueue.Session) async {
        let id = session.id
        defer { pump() }
        let runID: String
        do {
            runID = try await api.startRun(prompt: session.prompt, model: session.model)
        } catch {
            log.log(.warning, "hermes_session_failed", ["session": id, "reason": error.description])
            queue.end(id, .failed, error: "Hermes did not start the run: \(error.description)", atMillis: Self.nowMillis)
            ended(id)
            return
        }
        queue.update(id) { $0.runID = runID }
        // Hermes' session id from the start, so Timmy can match the live telemetry to it.
        if let sessionID = try? await api.status(runID: runID).sessionID { queue.update(id) { $0.sessionID = sessionID } }
        log.log(.info, "hermes_session_started", ["session": id, "run": runID, "model": session.model ?? "(default)"])
        let timeout = Int64(settings.sessionTimeoutMillis)
        let watchdog = Task {
            try await Task.sleep(for: .milliseconds(timeout))
            await self.timedOut(id: id, runID: runID)
        }
        defer { watchdog.cancel() }
        if queue.sessions[id]?.cancelRequested == true { await stop(id: id, runID: runID) }

        do {
            try await api.events(runID: runID, maxMillis: timeout + 60_000) { @Sendable event in
                await self.take(event, id: id, runID: runID)
            }
        } catch {
            log.log(.warning, "hermes_events_lost", ["session": id, "run": runID, "reason": error.description])
        }
        // The status holds the session id, and the outcome when the event stream ended early.
        let outcome = outcomes.removeValue(forKey: id)
        var status: HermesAPIClient.RunStatus?
        // Bounded: a gateway that stopped answering fails the session a minute past its time.
        let giveUp = (session.startedMillis ?? Self.nowMillis) + timeout + 60_000
        while !Task.isCancelled {
            status = try? await api.status(runID: runID)
            if outcome != nil || status?.ended == true || Self.nowMillis > giveUp { break }
            try? await Task.sleep(for: .milliseconds(Self.statusPollMillis))
        }
        finish(id: id, outcome: outcome, status: status)
    }

    /// One event of the run; an event that ends it leaves its end state in `outcomes`.
    private func take(_ event: HermesRunEvent, id: String, runID: String) async {
        switch event {
        case let .toolStarted(tool, preview):
            queue.update(id) { $0.toolCalls.append(.init(tool: tool, preview: preview)) }
        case let .toolCompleted(tool, duration, error):
            queue.update(id) { session in
                if let index = session.toolCalls.lastIndex(where: { $0.tool == tool && $0.durationMs == nil }) {
                    session.toolCalls[index].durationMs = duration ?? 0
                    session.toolCalls[index].error = error
                }
            }
        case let .approvalRequest(command, description):
            await ask(command: command, description: description, id: id, runID: runID)
        case let .completed(output, usage):
            queue.update(id) { session in
                session.answer = output
                if let usage { session.usage[session.model ?? "default"] = usage }
            }
            outcomes[id] = .completed
        case let .failed(error):
            queue.update(id) { $0.error = error }
            outcomes[id] = .failed
        case .cancelled:
            outcomes[id] = .interrupted
        case .other:
            break
        }
    }

    private func finish(id: String, outcome: HermesSessionQueue.State?, status: HermesAPIClient.RunStatus?) {
        // Approvals the run no longer waits for (it was stopped, or failed, meanwhile).
        for waiting in pending.values where waiting.session == id {
            pending[waiting.request] = nil
            let why = "the run ended before Timmy answered"
            publish(AllegroAlert.kind, waiting.request, try? AllegroAlert(alert: "hermes_approval_pending", subject: waiting.request, status: .resolved,
                                                                          severity: .warning, summary: why, details: "",
                                                                          sinceMillis: Int64(Clock.wallNanos / 1_000_000)).json)
            queue.update(id) { session in
                if let index = session.approvals.lastIndex(where: { $0.request == waiting.request }) {
                    session.approvals[index].decision = "deny"
                    session.approvals[index].why = why
                }
            }
        }
        if let runID = queue.sessions[id]?.runID { asked[runID] = nil }
        queue.update(id) { session in
            session.sessionID = status?.sessionID ?? session.sessionID
            if session.answer == nil, let output = status?.output { session.answer = output }
            if session.usage.isEmpty, let usage = status?.usage { session.usage[session.model ?? status?.model ?? "default"] = usage }
        }
        let state: HermesSessionQueue.State = outcome ?? {
            switch status?.status {
            case "completed"?: .completed
            case "cancelled"?: .interrupted
            default: .failed
            }
        }()
        let error = state == .failed && queue.sessions[id]?.error == nil
            ? (status.map { $0.error ?? "the run ended (\($0.status)) without telling how" } ?? "Hermes' API server did not answer about the run") : nil
        queue.end(id, state, error: error, atMillis: Self.nowMillis)
        ended(id)
        log.log(state == .completed ? .info : .warning, "hermes_session_ended", ["session": id, "state": state.rawValue])
    }

    private func timedOut(id: String, runID: String) async {
        guard let session = queue.sessions[id], !session.state.ended else { return }
        queue.update(id) { $0.error = "stopped after hermes.session_timeout_ms (\(self.settings.sessionTimeoutMillis) ms)" }
        log.log(.warning, "hermes_session_timeout", ["session": id, "run": runID])
        await stop(id: id, runID: runID)
    }

    private func stop(id: String, runID: String) async {
        if queue.sessions[id]?.error == nil { queue.update(id) { $0.error = "cancelled by Timmy" } }
        do { try await api.stop(runID: runID) } catch {
            log.log(.warning, "hermes_stop_failed", ["session": id, "run": runID, "reason": error.description])
        }
    }
}
