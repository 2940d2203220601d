import AllegroLog
import AllegroPosix
import Foundation

/// Runs Timmy's Hermes sessions through the gateway's API server: the `HermesSessionQueue`
/// decides what runs; this actor starts each run, follows its events to the end, stops it past
/// `hermes.session_timeout_ms` or when Timmy cancels, and keeps the outcome for Timmy to read.
/// It never decides on Hermes' output. Hermes' approval requests are denied here for now
/// (forwarding them to Timmy comes next); a denial is Hermes' own default when nobody answers.
actor HermesSessions {
    let settings: HermesSettings
    let api: HermesAPIClient
    let log: EventLog
    private var queue: HermesSessionQueue
    /// How each running session's events said it ended, until `run` finishes it.
    private var outcomes: [String: HermesSessionQueue.State] = [:]

    /// How often a wait looks again, and how often a run's status is read when its event stream
    /// ended early.
    static let lookMillis = 25
    static let statusPollMillis = 500

    init(settings: HermesSettings, api: HermesAPIClient, log: EventLog) {
        self.settings = settings
        self.api = api
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
        let deadline = Self.nowMillis + Int64(waitMillis)
        while let session = queue.sessions[id], !session.state.ended, Self.nowMillis < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Self.lookMillis))
        }
        return queue.sessions[id]
    }

    func cancel(_ id: String) async throws(CommandError) -> HermesSessionQueue.Session {
        switch queue.cancel(id, atMillis: Self.nowMillis) {
        case .unknown: throw CommandError(status: 404, reason: "no session \(id) (or it ended long ago and was forgotten)")
        case .dropped:
            log.log(.info, "hermes_session_cancelled", ["session": id, "state": "queued"])
            pump()
        case let .stop(runID?):
            log.log(.info, "hermes_session_cancelled", ["session": id, "run": runID])
            await stop(id: id, runID: runID)
        case .stop(nil), .alreadyEnded:
            break  // starting: stopped as soon as its run id is known
        }
        return queue.sessions[id] ?? HermesSessionQueue.Session(id: id, prompt: "", submittedMillis: 0)
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
            return
        }
        queue.update(id) { $0.runID = runID }
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
            let why = "approvals are not forwarded to Timmy yet: the bridge denies them, as Hermes does when nobody answers"
            queue.update(id) { $0.approvals.append(.init(command: command, description: description, decision: "deny", why: why)) }
            log.log(.warning, "hermes_approval_denied", ["session": id, "run": runID, "description": description])
            do { try await api.answerApproval(runID: runID, choice: "deny") } catch {
                log.log(.warning, "hermes_approval_not_answered", ["session": id, "run": runID, "reason": error.description])
            }
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
