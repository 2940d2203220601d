import AllegroApproval
import AllegroLog
import AllegroWire
import Foundation
import Hummingbird

/// Timmy's Hermes API on the bridge's HTTP port: `Authorization: Bearer` with
/// `hermes.command_token`, bodies JSON objects of strings with exactly the keys named, answers
/// JSON (errors `{"error": reason}` with a 4xx or 5xx), as `CommandRoutes`.
///
/// - `POST /v1/hermes/sessions` `{"operation_id","prompt","model"}` (`model` "" for Hermes'
///   default): the session, queued or running. The same operation id again is the same session.
/// - `GET /v1/hermes/sessions/{operation_id}?wait_ms=N`: the session, after waiting up to N ms
///   (at most 60000) for it to end.
/// - `POST /v1/hermes/sessions/{operation_id}/cancel`: stops it; the session as it is then.
/// - `GET /v1/hermes/approvals`: the approvals Hermes waits for (request id, command, its SHA-256,
///   deadline); `POST /v1/hermes/approvals/{request}/approve` `{"statement","signature"}` (Timmy's
///   signed `hermes_approve` of that request and command) or `.../deny` `{}`.
struct HermesRoutes: Sendable {
    let sessions: HermesSessions
    let settings: HermesSettings
    let token: Token
    let log: EventLog
    static let maxWaitMillis = 60_000

    func add(to router: Router<BasicRequestContext>) {
        addApprovals(to: router)
        let group = router.group("v1/hermes/sessions")
        group.post { request, _ in
            await CommandRoutes.answer("run_session", request, token: token, log: log) { () async throws(CommandError) in
                let body = try await CommandRoutes.body(request, keys: ["operation_id", "prompt", "model"])
                let operation = body["operation_id"] ?? ""
                try GiteaCommands.checkOperation(operation)
                let prompt = body["prompt"] ?? ""
                guard !prompt.isEmpty, prompt.utf8.count <= HermesSettings.maxPromptBytes else {
                    throw CommandError(status: 400, reason: "prompt: 1 byte ... \(HermesSettings.maxPromptBytes >> 10) KiB")
                }
                let model = body["model"] ?? ""
                guard model.isEmpty || settings.models.contains(model) else {
                    let allowed = settings.models.isEmpty ? "only Hermes' default (\"\"): hermes.models is empty"
                        : "\"\" (Hermes' default) or one of hermes.models: \(settings.models.joined(separator: ", "))"
                    throw CommandError(status: 400, reason: "model \(model) is not offered here; \(allowed)")
                }
                return Self.json(try await sessions.submit(id: operation, prompt: prompt, model: model.isEmpty ? nil : model))
            }
        }
        group.get(":id") { request, context in
            await CommandRoutes.answer("session", request, token: token, log: log) { () async throws(CommandError) in
                let id = try Self.id(context)
                let text = request.uri.queryParameters.get("wait_ms")
                guard let wait = text.map({ Int($0) }) ?? 0, (0 ... Self.maxWaitMillis).contains(wait) else {
                    throw CommandError(status: 400, reason: "wait_ms: a whole number from 0 to \(Self.maxWaitMillis), not \(text ?? "")")
                }
                guard let session = await sessions.wait(id, upToMillis: wait) else {
                    throw CommandError(status: 404, reason: "no session \(id) (or it ended long ago and was forgotten)")
                }
                return Self.json(session)
            }
        }
        group.post(":id/cancel") { request, context in
            await CommandRoutes.answer("cancel_session", request, token: token, log: log) { () async throws(CommandError) in
                Self.json(try await sessions.cancel(try Self.id(context)))
            }
        }
    }

    /// Timmy's answers to Hermes' approval requests.
    func addApprovals(to router: Router<BasicRequestContext>) {
        let group = router.group("v1/hermes/approvals")
        group.get { request, _ in
            await CommandRoutes.answer("hermes_approvals", request, token: token, log: log) { () async throws(CommandError) in
                let waiting = await sessions.pendingApprovals().map(Self.approval)
                return GiteaRecords.json(["approvals": waiting])
            }
        }
        group.post(":id/approve") { request, context in
            await CommandRoutes.answer("hermes_approve", request, token: token, log: log) { () async throws(CommandError) in
                let body = try await CommandRoutes.body(request, keys: ["statement", "signature"])
                let approved = try await sessions.approve(try Self.id(context), statement: body["statement"] ?? "", signature: body["signature"] ?? "")
                return GiteaRecords.json(Self.approval(approved).merging(["decision": "approve"]) { a, _ in a })
            }
        }
        group.post(":id/deny") { request, context in
            await CommandRoutes.answer("hermes_deny", request, token: token, log: log) { () async throws(CommandError) in
                _ = try await CommandRoutes.body(request, keys: [])
                let denied = try await sessions.deny(try Self.id(context))
                return GiteaRecords.json(Self.approval(denied).merging(["decision": "deny"]) { a, _ in a })
            }
        }
    }

    static func approval(_ waiting: HermesSessions.PendingApproval) -> [String: Any] {
        ["request": waiting.request, "session": waiting.session, "run_id": waiting.runID, "command": waiting.command,
         "description": waiting.description, "command_sha256": waiting.commandSHA256,
         "deadline": UTCTimestamp.text(waiting.deadlineWallMillis / 1000)]
    }

    static func id(_ context: BasicRequestContext) throws(CommandError) -> String {
        let id = context.parameters.get("id") ?? ""
        try GiteaCommands.checkOperation(id)
        return id
    }

    /// The session as Timmy reads it (the seed's HermesResult, with its state).
    static func json(_ session: HermesSessionQueue.Session) -> String {
        let optional = { (value: Any?) -> Any in value ?? NSNull() }
        let usage = session.usage.mapValues { ["input_tokens": $0.inputTokens, "output_tokens": $0.outputTokens, "total_tokens": $0.totalTokens] }
        let object: [String: Any] = [
            "id": session.id,
            "state": session.state.rawValue,
            "model": optional(session.model),
            "run_id": optional(session.runID),
            "session_id": optional(session.sessionID),
            "answer": optional(session.answer),
            "error": optional(session.error),
            "usage": usage,
            "tool_calls": session.toolCalls.map { ["tool": $0.tool, "preview": $0.preview, "duration_ms": optional($0.durationMs), "error": optional($0.error)] },
            "approvals": session.approvals.map { ["request": $0.request, "command": $0.command, "description": $0.description, "decision": $0.decision, "why": $0.why] },
            "duration_ms": optional(session.startedMillis.flatMap { started in session.endedMillis.map { $0 - started } }),
            "waited_ms": optional(session.startedMillis.map { $0 - session.submittedMillis }),
        ]
        return GiteaRecords.json(object)
    }
}
