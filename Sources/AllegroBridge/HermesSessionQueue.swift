/// Timmy's Hermes sessions as a state machine, apart from I/O: each is submitted under Timmy's
/// operation id (asking again with the same id gives the same session, never a second run),
/// waits in a bounded queue, runs in one of `maxRunning` slots in the order submitted, and ends
/// once: completed, failed or interrupted (cancelled or past its time). Finished sessions are
/// kept for Timmy to read for `keepMillis`, at most `maxKept`, then forgotten.
struct HermesSessionQueue: Sendable {
    enum State: String, Sendable, Codable {
        case queued, running, completed, failed, interrupted
        var ended: Bool { self == .completed || self == .failed || self == .interrupted }
    }

    /// One tool call of a session, as Hermes' run events tell it.
    struct ToolCall: Sendable, Equatable, Codable {
        var tool: String
        var preview: String
        var durationMs: Int64?
        var error: Bool?
    }

    /// An approval Hermes asked for during the session, and what it was answered.
    struct Approval: Sendable, Equatable, Codable {
        /// The Allegro Request that asked Timmy.
        var request: String
        var command: String
        var description: String
        /// "pending", then "approve" or "deny".
        var decision: String
        var why: String
    }

    struct Usage: Sendable, Equatable, Codable {
        var inputTokens: Int64
        var outputTokens: Int64
        var totalTokens: Int64
    }

    /// The seed's HermesResult, and where the session is in its life.
    struct Session: Sendable, Equatable {
        var id: String
        var prompt: String
        /// Asked for; nil: Hermes' default.
        var model: String?
        var state: State = .queued
        var runID: String?
        var sessionID: String?
        var answer: String?
        var error: String?
        /// By model name: Hermes reports one total per run, counted for the run's model.
        var usage: [String: Usage] = [:]
        var toolCalls: [ToolCall] = []
        var approvals: [Approval] = []
        var submittedMillis: Int64
        var startedMillis: Int64?
        var endedMillis: Int64?
        var cancelRequested = false
    }

    enum Refusal: Error, Equatable {
        /// The same operation id with another prompt or model.
        case conflict
        case queueFull
    }

    /// What a cancel asks of the runner.
    enum CancelAction: Equatable {
        /// It never started: it is interrupted now, nothing to stop.
        case dropped
        /// Its run must be stopped (POST stop); it ends when Hermes says so.
        case stop(runID: String?)
        case alreadyEnded
        case unknown
    }

    let maxRunning: Int
    let maxQueued: Int
    let keepMillis: Int64
    let maxKept: Int
    private(set) var sessions: [String: Session] = [:]
    /// Submitted and not started, in order.
    private(set) var waiting: [String] = []
    private(set) var running: Set<String> = []

    init(maxRunning: Int, maxQueued: Int, keepMillis: Int64, maxKept: Int) {
        self.maxRunning = maxRunning
        self.maxQueued = maxQueued
        self.keepMillis = keepMillis
        self.maxKept = maxKept
    }

    static func isModelName(_ name: String) -> Bool {
        (1 ... 200).contains(name.utf8.count)
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0" ... "9").contains($0) || "-_.:/".unicodeScalars.contains($0)) }
    }

    /// A new session, or the one already under `id` (the same prompt and model).
    mutating func submit(id: String, prompt: String, model: String?, atMillis now: Int64) throws(Refusal) -> Session {
        if let known = sessions[id] {
            guard known.prompt == prompt, known.model == model else { throw .conflict }
            return known
        }
        // Waiting now are those about to take a free slot and those queued behind them.
        guard waiting.count < maxQueued + max(maxRunning - running.count, 0) else { throw .queueFull }
        let session = Session(id: id, prompt: prompt, model: model, submittedMillis: now)
        sessions[id] = session
        waiting.append(id)
        return session
    }

    /// The sessions to start now (slots free), marked running.
    mutating func startable(atMillis now: Int64) -> [Session] {
        var started: [Session] = []
        while running.count < maxRunning, !waiting.isEmpty {
            let id = waiting.removeFirst()
            guard var session = sessions[id] else { continue }
            session.state = .running
            session.startedMillis = now
            sessions[id] = session
            running.insert(id)
            started.append(session)
        }
        return started
    }

    mutating func update(_ id: String, _ change: (inout Session) -> Void) {
        guard var session = sessions[id], !session.state.ended else { return }
        change(&session)
        sessions[id] = session
    }

    /// The session ends (once: a later end is ignored); its slot is free.
    mutating func end(_ id: String, _ state: State, error: String? = nil, atMillis now: Int64) {
        assert(state.ended, "end takes an end state")
        guard var session = sessions[id], !session.state.ended else { return }
        session.state = state
        session.error = error ?? session.error
        session.endedMillis = now
        sessions[id] = session
        running.remove(id)
        waiting.removeAll { $0 == id }
    }

    mutating func cancel(_ id: String, atMillis now: Int64) -> CancelAction {
        guard let session = sessions[id] else { return .unknown }
        if session.state.ended { return .alreadyEnded }
        if session.state == .queued {
            end(id, .interrupted, error: "cancelled before it started", atMillis: now)
            return .dropped
        }
        sessions[id]?.cancelRequested = true
        return .stop(runID: session.runID)
    }

    /// Forgets finished sessions older than `keepMillis`, and the oldest beyond `maxKept`.
    mutating func forget(atMillis now: Int64) {
        let ended = sessions.values.filter { $0.state.ended }.sorted { ($0.endedMillis ?? 0) < ($1.endedMillis ?? 0) }
        var excess = ended.count - maxKept
        for session in ended {
            if now - (session.endedMillis ?? now) >= keepMillis || excess > 0 {
                sessions[session.id] = nil
                excess -= 1
            }
        }
    }
}
