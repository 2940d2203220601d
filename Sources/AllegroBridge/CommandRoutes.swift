import AllegroLog
import AllegroWire
import Foundation
import Hummingbird

/// Timmy's command API on the bridge's HTTP port (`protocol/GITEA.md`): every route asks for
/// `Authorization: Bearer` with `gitea.command_token` (compared in constant time); bodies are
/// JSON objects with exactly the keys named; answers are JSON, errors `{"error": reason}` with
/// a 4xx or 5xx. Every request and its outcome is logged, never a token or a body.
///
/// - `GET /v1/gitea/{owner}/{repo}/issues?since=RFC3339&limit=N`: issues and pull requests
///   updated since, from the bridge's cache (answers while Gitea is slow).
/// - `GET /v1/gitea/{owner}/{repo}/issues/{n}`: one issue with its comments, from Gitea.
/// - `POST /v1/gitea/{owner}/{repo}/issues/{n}/comments` `{"operation_id","body"}`
/// - `PUT /v1/gitea/{owner}/{repo}/issues/{n}/status` `{"operation_id","status"}`
/// - `POST /v1/gitea/{owner}/{repo}/issues/{n}/close` `{"operation_id","statement","signature"}`
/// - `POST /v1/gitea/{owner}/{repo}/pulls` `{"operation_id","head","base","title","body","statement","signature"}`
/// - `POST /v1/gitea/{owner}/{repo}/pulls/{n}/merge` `{"operation_id","statement","signature"}`
///
/// The last three are gated: `statement` and `signature` are Timmy's signed approval of exactly
/// that action (protocol/APPROVAL.md).
struct CommandRoutes: Sendable {
    let commands: GiteaCommands
    let token: Token
    let log: EventLog
    static let maxBodyBytes = 128 << 10

    func add(to router: Router<BasicRequestContext>) {
        addGated(to: router)
        let group = router.group("v1/gitea")
        group.get(":owner/:repo/issues") { request, context in
            await answer("issues", request) { () async throws(CommandError) in
                let repo = try Self.repo(context)
                let since = try Self.since(request.uri.queryParameters.get("since"))
                let text = request.uri.queryParameters.get("limit")
                guard let limit = text.map({ Int($0) }) ?? 500, (1 ... 5_000).contains(limit) else {
                    throw CommandError(status: 400, reason: "limit: a whole number from 1 to 5000, not \(text ?? "")")
                }
                let issues = try commands.issues(repo: repo, sinceMillis: since, limit: limit)
                return "{\"issues\":[" + issues.joined(separator: ",") + "]}"
            }
        }
        group.get(":owner/:repo/issues/:number") { request, context in
            await answer("details", request) { () async throws(CommandError) in
                let object = try await commands.details(repo: try Self.repo(context), number: try Self.number(context))
                return GiteaRecords.json(object)
            }
        }
        group.post(":owner/:repo/issues/:number/comments") { request, context in
            await answer("comment", request) { () async throws(CommandError) in
                let body = try await Self.body(request, keys: ["operation_id", "body"])
                let result = try await commands.comment(repo: try Self.repo(context), number: try Self.number(context),
                                                        operation: body["operation_id"] ?? "", body: body["body"] ?? "")
                return GiteaRecords.json(result)
            }
        }
        group.put(":owner/:repo/issues/:number/status") { request, context in
            await answer("status", request) { () async throws(CommandError) in
                let body = try await Self.body(request, keys: ["operation_id", "status"])
                let result = try await commands.status(repo: try Self.repo(context), number: try Self.number(context),
                                                       operation: body["operation_id"] ?? "", status: body["status"] ?? "")
                return GiteaRecords.json(result)
            }
        }
    }

    func addGated(to router: Router<BasicRequestContext>) {
        let group = router.group("v1/gitea")
        group.post(":owner/:repo/issues/:number/close") { request, context in
            await answer("close_issue", request) { () async throws(CommandError) in
                let body = try await Self.body(request, keys: ["operation_id", "statement", "signature"])
                let result = try await commands.closeIssue(repo: try Self.repo(context), number: try Self.number(context),
                                                           operation: body["operation_id"] ?? "", approval: Self.approval(body))
                return GiteaRecords.json(result)
            }
        }
        group.post(":owner/:repo/pulls") { request, context in
            await answer("create_pr", request) { () async throws(CommandError) in
                let body = try await Self.body(request, keys: ["operation_id", "head", "base", "title", "body", "statement", "signature"])
                let result = try await commands.createPull(repo: try Self.repo(context), operation: body["operation_id"] ?? "",
                                                           head: body["head"] ?? "", base: body["base"] ?? "", title: body["title"] ?? "",
                                                           body: body["body"] ?? "", approval: Self.approval(body))
                return GiteaRecords.json(result)
            }
        }
        group.post(":owner/:repo/pulls/:number/merge") { request, context in
            await answer("merge_pr", request) { () async throws(CommandError) in
                let body = try await Self.body(request, keys: ["operation_id", "statement", "signature"])
                let result = try await commands.mergePull(repo: try Self.repo(context), number: try Self.number(context),
                                                          operation: body["operation_id"] ?? "", approval: Self.approval(body))
                return GiteaRecords.json(result)
            }
        }
    }

    static func approval(_ body: [String: String]) -> GiteaCommands.Approval {
        GiteaCommands.Approval(statement: body["statement"] ?? "", signature: body["signature"] ?? "")
    }

    private func answer(_ name: String, _ request: Request, _ work: () async throws(CommandError) -> String) async -> Response {
        await Self.answer(name, request, token: token, log: log, work)
    }

    /// Checks the token, runs `work`, logs the outcome and answers it.
    static func answer(_ name: String, _ request: Request, token: Token, log: EventLog,
                       _ work: () async throws(CommandError) -> String) async -> Response {
        let offered = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? Array($0.utf8.dropFirst(7)) : nil } ?? []
        guard offered.withUnsafeBytes({ token.matches($0) }) else {
            log.log(.warning, "command_refused", ["command": name, "path": request.uri.path, "reason": "no or wrong bearer token"])
            return Self.json(#"{"error":"Timmy's command API asks for its token: Authorization: Bearer TOKEN"}"#, status: .unauthorized)
        }
        let started = ContinuousClock.now
        do {
            let text = try await work()
            let elapsed = (ContinuousClock.now - started).components
            let millis = elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000
            log.log(.info, "command_answered", ["command": name, "path": request.uri.path, "status": "200", "ms": String(millis)])
            return Self.json(text, status: .ok)
        } catch {
            log.log(error.status >= 500 ? .warning : .info, "command_answered",
                    ["command": name, "path": request.uri.path, "status": String(error.status), "reason": error.reason])
            return Self.json(GiteaRecords.json(["error": error.reason]), status: HTTPResponse.Status(code: error.status))
        }
    }

    static func json(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func repo(_ context: BasicRequestContext) throws(CommandError) -> String {
        guard let owner = context.parameters.get("owner"), let name = context.parameters.get("repo") else {
            throw CommandError(status: 404, reason: "no repository in the path")
        }
        return owner + "/" + name
    }

    static func number(_ context: BasicRequestContext) throws(CommandError) -> Int64 {
        guard let text = context.parameters.get("number"), let number = Int64(text), number > 0 else {
            throw CommandError(status: 400, reason: "the issue number in the path must be a whole number above 0")
        }
        return number
    }

    static func since(_ text: String?) throws(CommandError) -> Int64 {
        guard let text else { return 0 }
        guard let millis = GiteaRecords.millis(text) else {
            throw CommandError(status: 400, reason: "since: an RFC 3339 time such as 2026-12-03T10:00:00Z, not \(text)")
        }
        return millis
    }

    /// A JSON object of string values with exactly `keys`.
    static func body(_ request: Request, keys: Set<String>) async throws(CommandError) -> [String: String] {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxBodyBytes) } catch {
            throw CommandError(status: 413, reason: "the body is larger than \(maxBodyBytes) bytes")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any] else {
            throw CommandError(status: 400, reason: "the body must be one JSON object")
        }
        if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
            throw CommandError(status: 400, reason: "\(unknown): unknown key (the keys are \(keys.sorted().joined(separator: ", ")))")
        }
        var values: [String: String] = [:]
        for key in keys.sorted() {
            guard let value = object[key] as? String else { throw CommandError(status: 400, reason: "\(key): missing, or not a string") }
            values[key] = value
        }
        return values
    }
}
