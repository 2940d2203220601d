import AllegroGitea
import AllegroLog
import AllegroMessages
import AllegroPosix
import Foundation
import Synchronization

/// Why a command of Timmy's was not done: an HTTP status for his API and a reason.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var reason: String
    public var description: String { reason }
}

/// Timmy's ungated Gitea commands (comment, status) and his reads (issues since, details).
/// Each command is journaled (`CommandJournal`) before its Gitea call and looks before it
/// writes: a comment carries its operation id as a hidden marker and is first looked for; a
/// status is first compared with the issue's labels. Every outcome is also an Allegro Report on
/// the stream. Only configured repositories are served; closing keywords in what it writes are
/// rewritten (`ClosingKeywords`).
struct GiteaCommands: Sendable {
    let settings: GiteaSettings
    let client: GiteaClient
    let store: BridgeStore
    let publisher: OutboxPublisher
    /// Timmy's approvals for the gated commands; nil: they are refused (no `gitea.allowed_signers`).
    let gate: ApprovalGate?
    /// One run at a time per operation id (a retried request, or a resumption, waits for the
    /// one in flight and then finds its outcome in the journal).
    let running = OperationLocks()
    let log: EventLog
    /// The `gitea` duty's epoch when a supervisor runs this bridge as a duty (failover between
    /// hosts; `ALLEGRO_DUTY_EPOCH`): every outcome names it, so Timmy can tell which holder did
    /// what. Nil: not run as a duty.
    var dutyEpoch: Int64? = nil

    /// Tries of a write whose answer was lost (each after looking again).
    static let writeAttempts = 4

    static func marker(_ operation: String) -> String { "<!-- allegro-op: \(operation) -->" }

    func checkRepo(_ repo: String) throws(CommandError) {
        guard settings.repos.contains(repo) else {
            throw CommandError(status: 404, reason: "\(repo) is not one of the repositories this bridge serves (gitea.repos)")
        }
    }

    static func checkOperation(_ operation: String) throws(CommandError) {
        guard (1 ... 128).contains(operation.utf8.count),
              operation.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0" ... "9").contains($0) || "-_.:".unicodeScalars.contains($0)) })
        else { throw CommandError(status: 400, reason: "operation_id: 1 ... 128 characters of letters, digits, - _ . :") }
    }

    // MARK: Reads

    /// Issues and pull requests updated since `sinceMillis`, from the bridge's cache.
    func issues(repo: String, sinceMillis: Int64, limit: Int) throws(CommandError) -> [String] {
        try checkRepo(repo)
        do { return try store.cachedIssues(repo: repo, sinceMillis: sinceMillis, limit: limit) } catch {
            throw CommandError(status: 500, reason: "cannot read the bridge's cache: \(error)")
        }
    }

    /// One issue with its comments and labels, from Gitea.
    func details(repo: String, number: Int64) async throws(CommandError) -> [String: Any] {
        try checkRepo(repo)
        do {
            let issue: GiteaIssue = try await client.get("/repos/\(repo)/issues/\(number)").value
            // This list takes no page or limit (swagger.v1.json): Gitea answers every comment at once.
            let comments: [GiteaComment] = try await client.get("/repos/\(repo)/issues/\(number)/comments").value
            var object = (try? JSONSerialization.jsonObject(with: Data(GiteaRecords.change(repo: repo, issue: issue).payload.utf8))) as? [String: Any] ?? [:]
            object["kind"] = issue.isPull ? "pull" : "issue"
            object["comment_list"] = comments.map { comment -> [String: Any] in
                ["id": comment.id, "user": comment.user?.login ?? "", "body": comment.body, "updated_at": comment.updatedAt,
                 "html_url": comment.htmlURL ?? ""]
            }
            return object
        } catch {
            throw Self.gitea(error)
        }
    }

    // MARK: Comment

    func comment(repo: String, number: Int64, operation: String, body: String) async throws(CommandError) -> [String: Any] {
        try checkRepo(repo)
        try Self.checkOperation(operation)
        guard !body.isEmpty, body.utf8.count <= 64 << 10 else { throw CommandError(status: 400, reason: "body: 1 byte ... 64 KiB") }
        let request = GiteaRecords.json(["body": body])
        return try await journaled(operation: operation, kind: "comment", repo: repo, number: number, request: request) { (_: Bool) async throws(CommandError) in
            try await doComment(repo: repo, number: number, operation: operation, body: body)
        }
    }

    func doComment(repo: String, number: Int64, operation: String, body: String) async throws(CommandError) -> [String: Any] {
        let marker = Self.marker(operation)
        let text = ClosingKeywords.rewrite(body) + "\n\n" + marker
        for attempt in 1 ... Self.writeAttempts {
            do {
                // This list takes no page or limit (swagger.v1.json): Gitea answers every comment at once.
                let comments: [GiteaComment] = try await client.get("/repos/\(repo)/issues/\(number)/comments").value
                if let found = comments.first(where: { $0.body.contains(marker) }) {
                    return ["comment_id": found.id, "html_url": found.htmlURL ?? "", "written": attempt > 1 ? "found after a lost answer" : "found"]
                }
                let (_, made): (Int, GiteaComment?) = try await client.write(.POST, "/repos/\(repo)/issues/\(number)/comments", body: ["body": text])
                if let made, let earlier = try await earlierCopy(of: made, repo: repo, number: number, marker: marker) {
                    return ["comment_id": earlier.id, "html_url": earlier.htmlURL ?? "", "written": "found (a second copy was removed)"]
                }
                return ["comment_id": made?.id ?? 0, "html_url": made?.htmlURL ?? "", "written": "now"]
            } catch where error.retryable && attempt < Self.writeAttempts {
                log.log(.warning, "gitea_command_retry", ["operation": operation, "reason": "\(error)", "next": "look, then write"])
                try? await Task.sleep(for: .milliseconds(500 << attempt))
            } catch {
                throw Self.gitea(error)
            }
        }
        throw CommandError(status: 503, reason: "Gitea did not answer; the command stays journaled and is finished at the next try")
    }

    /// Looks again after a write: two bridges (a partition, both holding the `gitea` duty) can
    /// each look, find nothing, and write. Every writer then keeps the copy with the lowest id
    /// and removes its own if it is not that one, so one copy stays whoever looks last. Nil:
    /// `made` is the copy that stays.
    private func earlierCopy(of made: GiteaComment, repo: String, number: Int64, marker: String) async throws(GiteaError) -> GiteaComment? {
        let comments: [GiteaComment] = try await client.get("/repos/\(repo)/issues/\(number)/comments").value
        guard let first = comments.filter({ $0.body.contains(marker) }).min(by: { $0.id < $1.id }), first.id < made.id else { return nil }
        let _: (Int, GiteaClient.Empty?) = try await client.write(.DELETE, "/repos/\(repo)/issues/comments/\(made.id)", body: nil)
        log.log(.warning, "gitea_comment_twice", ["repo": repo, "number": String(number), "kept": String(first.id), "removed": String(made.id)])
        return first
    }

    // MARK: Status

    /// Sets the issue's one `status/...` label (an exclusive scope) to `status`.
    func status(repo: String, number: Int64, operation: String, status: String) async throws(CommandError) -> [String: Any] {
        try checkRepo(repo)
        try Self.checkOperation(operation)
        guard settings.statuses.contains(status) else {
            throw CommandError(status: 400, reason: "status: one of \(settings.statuses.joined(separator: ", ")) (gitea.statuses)")
        }
        let request = GiteaRecords.json(["status": status])
        return try await journaled(operation: operation, kind: "status", repo: repo, number: number, request: request) { (_: Bool) async throws(CommandError) in
            try await doStatus(repo: repo, number: number, status: status)
        }
    }

    func doStatus(repo: String, number: Int64, status: String) async throws(CommandError) -> [String: Any] {
        let wanted = GiteaSettings.statusLabel(status)
        for attempt in 1 ... Self.writeAttempts {
            do {
                let labels: [GiteaLabel] = try await client.getAll("/repos/\(repo)/labels", limit: settings.pageSize)
                guard let target = labels.first(where: { $0.name == wanted }) else {
                    throw CommandError(status: 409, reason: "\(repo) has no label \(wanted): create it in Gitea (Allegro does not change a repository's labels)")
                }
                let current: [GiteaLabel] = try await client.get("/repos/\(repo)/issues/\(number)/labels").value
                let others = current.filter { $0.name.hasPrefix(GiteaSettings.statusPrefix) && $0.id != target.id }
                for label in others {
                    let _: (Int, GiteaClient.Empty?) = try await client.write(.DELETE, "/repos/\(repo)/issues/\(number)/labels/\(label.id)", body: nil)
                }
                if !current.contains(where: { $0.id == target.id }) {
                    let _: (Int, [GiteaLabel]?) = try await client.write(.POST, "/repos/\(repo)/issues/\(number)/labels", body: ["labels": [target.id]])
                }
                return ["status": status, "label": wanted, "removed": others.map(\.name)]
            } catch let error as CommandError {
                throw error
            } catch let error as GiteaError where error.retryable && attempt < Self.writeAttempts {
                log.log(.warning, "gitea_command_retry", ["reason": "\(error)", "next": "look, then write"])
                try? await Task.sleep(for: .milliseconds(500 << attempt))
            } catch let error as GiteaError {
                throw Self.gitea(error)
            } catch {
                throw CommandError(status: 500, reason: "\(error)")
            }
        }
        throw CommandError(status: 503, reason: "Gitea did not answer; the command stays journaled and is finished at the next try")
    }

    /// Finishes the commands a crash left pending, each by looking at Gitea before writing.
    func resumePending() async {
        for command in (try? store.pendingCommands()) ?? [] {
            let request = (try? JSONSerialization.jsonObject(with: Data(command.request.utf8))) as? [String: Any] ?? [:]
            log.log(.info, "gitea_command_resumed", ["operation": command.operation, "command": command.kind, "repo": command.repo])
            do {
                switch command.kind {
                case "comment":
                    _ = try await comment(repo: command.repo, number: command.number, operation: command.operation,
                                          body: request["body"] as? String ?? "")
                case "status":
                    _ = try await status(repo: command.repo, number: command.number, operation: command.operation,
                                         status: request["status"] as? String ?? "")
                case "close_issue", "create_pr", "merge_pr":
                    _ = try await resumeGated(command, request)
                default:
                    log.log(.error, "gitea_command_unknown", ["operation": command.operation, "command": command.kind])
                }
            } catch {
                log.log(.warning, "gitea_command_not_resumed", ["operation": command.operation, "reason": error.reason])
            }
        }
    }

    // MARK: The journal around a command

    /// Journals the command, runs it unless an earlier call finished it, records the outcome,
    /// and reports it on the stream. `body` learns whether it resumes a journaled command.
    func journaled(operation: String, kind: String, repo: String, number: Int64, request: String,
                   _ body: (_ resuming: Bool) async throws(CommandError) -> [String: Any]) async throws(CommandError) -> [String: Any] {
        guard await running.acquire(operation) else {
            throw CommandError(status: 503, reason: "operation_id \(operation) is still running; ask again later")
        }
        defer { running.release(operation) }
        let started = Clock.monotonicNanos
        let entry: BridgeStore.JournalEntry
        do { entry = try store.journal(operation: operation, kind: kind, repo: repo, number: number, request: request, nowMillis: Self.nowMillis) } catch {
            throw CommandError(status: 500, reason: "cannot journal the command: \(error)")
        }
        switch entry {
        case let .conflict(otherKind, otherRepo, otherNumber):
            throw CommandError(status: 409, reason: "operation_id \(operation) was used for \(otherKind) on \(otherRepo)#\(otherNumber) or with another body")
        case let .finished(state, result):
            let object = (try? JSONSerialization.jsonObject(with: Data(result.utf8))) as? [String: Any] ?? [:]
            if state == "done" { return object.merging(["repeated": true]) { a, _ in a } }
            throw CommandError(status: 409, reason: "operation_id \(operation) failed before: \(object["error"] as? String ?? "")")
        case .new, .pending:
            break
        }
        let resuming = entry == .pending
        log.log(.info, "gitea_command", ["operation": operation, "command": kind, "repo": repo, "number": String(number)])
        do {
            var result = try await body(resuming)
            if let dutyEpoch { result["duty_epoch"] = dutyEpoch }
            finish(operation: operation, kind: kind, repo: repo, number: number, state: "done", result: result, started: started)
            return result
        } catch where error.status == 503 {
            throw error  // stays pending: the next call (or start) finishes it
        } catch {
            finish(operation: operation, kind: kind, repo: repo, number: number, state: "failed", result: ["error": error.reason], started: started)
            throw error
        }
    }

    private func finish(operation: String, kind: String, repo: String, number: Int64, state: String, result: [String: Any], started: UInt64) {
        let text = GiteaRecords.json(result)
        let millis = Int64((Clock.monotonicNanos - started) / 1_000_000)
        log.log(state == "done" ? .info : .warning, "gitea_command_\(state)", ["operation": operation, "command": kind, "repo": repo,
                                                                                "number": String(number), "ms": String(millis)])
        do {
            try store.finish(operation: operation, state: state, result: text, nowMillis: Self.nowMillis)
            if let report = Self.report(kind: kind, repo: repo, number: number, state: state, result: result, millis: millis) {
                try store.enqueueRecords([("allegro.report", "\(repo)#\(number)", report.json)], nowMillis: Self.nowMillis)
                publisher.poke()
            }
        } catch {
            log.log(.error, "gitea_command_not_recorded", ["operation": operation, "reason": "\(error)"])
        }
    }

    /// The command's outcome as an Allegro Report.
    static func report(kind: String, repo: String, number: Int64, state: String, result: [String: Any], millis: Int64) -> AllegroReport? {
        let url = result["html_url"] as? String
        let lines = result.keys.sorted().map { "\($0): \(result[$0].map { "\($0)" } ?? "")" }
        let results = lines.isEmpty ? "(nothing)" : lines.joined(separator: "\n").replacingOccurrences(of: "**", with: "*")
        guard let telemetry = try? AllegroReport.Telemetry(executions: 1, successRatePercent: state == "done" ? 100 : 0, avgLatencyMillis: max(millis, 0))
        else { return nil }
        return try? AllegroReport(task: "Gitea \(kind) on \(repo)#\(number)", status: state == "done" ? .complete : .failed,
                                  duration: "\(millis) ms", results: results, artifacts: url.map { $0.isEmpty ? [] : [$0] } ?? [],
                                  telemetry: telemetry, nextSteps: state == "done" ? "None." : "Timmy decides whether to try again.")
    }

    static var nowMillis: Int64 { Int64(Clock.wallNanos / 1_000_000) }

    /// The receipt triage posts on a new issue: an Allegro Report in the seed's Markdown.
    static func receipt(repo: String, number: Int64, status: String) -> String? {
        guard let telemetry = try? AllegroReport.Telemetry(executions: 1, successRatePercent: 100, avgLatencyMillis: 0) else { return nil }
        let labelled = status.isEmpty ? "" : " and labelled \(GiteaSettings.statusLabel(status))"
        return try? AllegroReport(task: "Triage of \(repo)#\(number)", status: .complete, duration: "0s",
                                  results: "Received by Allegro\(labelled); Timmy has it and decides what happens next.",
                                  artifacts: [], telemetry: telemetry, nextSteps: "Timmy decides.").markdown
    }

    static func gitea(_ error: GiteaError) -> CommandError {
        switch error.status {
        case 404?: CommandError(status: 404, reason: "Gitea: \(error)")
        case let status? where (400 ..< 500).contains(status) && status != 429: CommandError(status: 409, reason: "Gitea refused: \(error)")
        default: CommandError(status: 503, reason: "Gitea is unavailable: \(error)")
        }
    }
}

/// Operation ids being run now, in this process. Bounded by the requests in flight.
final class OperationLocks: Sendable {
    private let busy = Mutex(Set<String>())
    /// How long a second caller waits for the first before it is told to ask again.
    static let waitMillis = 120_000

    /// Takes `operation`, waiting while another call holds it; false after `waitMillis`.
    func acquire(_ operation: String) async -> Bool {
        for _ in 0 ..< Self.waitMillis / 20 {
            if busy.withLock({ $0.insert(operation).inserted }) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    func release(_ operation: String) {
        busy.withLock { _ = $0.remove(operation) }
    }
}
