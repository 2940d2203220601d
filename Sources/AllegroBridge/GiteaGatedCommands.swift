import AllegroApproval
import AllegroGitea
import Foundation

/// Timmy's gated Gitea commands: close an issue, create a pull request, merge one. Each takes
/// his signed approval of exactly that action (protocol/APPROVAL.md), checked on receipt
/// (nonce consumed) and again right before the Gitea call against the action as Gitea shows it
/// then; each is journaled and looks before it writes. Boundaries: a pull request whose head is
/// the default or a protected branch is refused; closing keywords in its body become `Refs`.
extension GiteaCommands {
    /// The statement and signature every gated command carries.
    struct Approval: Sendable {
        var statement: String
        var signature: String
    }

    func requireGate() throws(CommandError) -> ApprovalGate {
        guard let gate else {
            throw CommandError(status: 403, reason: "gated commands need Timmy's public key: set gitea.allowed_signers")
        }
        return gate
    }

    // MARK: Close an issue

    func closeIssue(repo: String, number: Int64, operation: String, approval: Approval) async throws(CommandError) -> [String: Any] {
        try checkRepo(repo)
        try Self.checkOperation(operation)
        let gate = try requireGate()
        let request = GiteaRecords.json(["statement": approval.statement, "signature": approval.signature])
        return try await journaled(operation: operation, kind: "close_issue", repo: repo, number: number, request: request) { (resuming: Bool) async throws(CommandError) in
            let action = CloseIssue(repo: repo, issue: number)
            let approved = try gate.approve(action, statement: approval.statement, signature: approval.signature, resuming: resuming)
            return try await lookThenWrite(operation) { () async throws(GiteaError) -> [String: Any]? in
                let issue: GiteaIssue = try await client.get("/repos/\(repo)/issues/\(number)").value
                if issue.state == "closed" { return ["state": "closed", "html_url": issue.htmlURL ?? "", "written": "found"] }
                return nil
            } write: { () async throws(CommandError) -> [String: Any] in
                try gate.recheck(approved, actionNow: CloseIssue(repo: repo, issue: number))
                let (_, issue): (Int, GiteaIssue?) = try await Self.giteaWrite { () async throws(GiteaError) in
                    try await client.write(.PATCH, "/repos/\(repo)/issues/\(number)", body: ["state": "closed"])
                }
                return ["state": issue?.state ?? "closed", "html_url": issue?.htmlURL ?? "", "written": "now"]
            }
        }
    }

    // MARK: Create a pull request

    func createPull(repo: String, operation: String, head: String, base: String, title: String, body: String,
                    approval: Approval) async throws(CommandError) -> [String: Any] {
        try checkRepo(repo)
        try Self.checkOperation(operation)
        let gate = try requireGate()
        guard !title.isEmpty, title.utf8.count <= 255, !head.isEmpty, !base.isEmpty, head != base else {
            throw CommandError(status: 400, reason: "title (1 ... 255 bytes), head and base (two different branches) are needed")
        }
        let request = GiteaRecords.json(["head": head, "base": base, "title": title, "body": body,
                                         "statement": approval.statement, "signature": approval.signature])
        return try await journaled(operation: operation, kind: "create_pr", repo: repo, number: 0, request: request) { (resuming: Bool) async throws(CommandError) in
            let headSHA = try await checkedHead(repo: repo, head: head)
            let approved = try gate.approve(CreatePullRequest(repo: repo, head: head, headSHA: headSHA, base: base),
                                            statement: approval.statement, signature: approval.signature, resuming: resuming)
            return try await lookThenWrite(operation) { () async throws(GiteaError) -> [String: Any]? in
                try await existingPull(repo: repo, base: base, head: head)
            } write: { () async throws(CommandError) -> [String: Any] in
                let now = try await checkedHead(repo: repo, head: head)
                try gate.recheck(approved, actionNow: CreatePullRequest(repo: repo, head: head, headSHA: now, base: base))
                do throws(GiteaError) {
                    let (_, pull): (Int, GiteaPull?) = try await client.write(.POST, "/repos/\(repo)/pulls", body: [
                        "head": head, "base": base, "title": ClosingKeywords.rewrite(title), "body": ClosingKeywords.rewrite(body),
                    ])
                    return ["pull": pull?.number ?? 0, "html_url": pull?.htmlURL ?? "", "head_sha": now, "written": "now"]
                } catch where error.status == 409 {
                    // Gitea: a pull request for this head and base already exists; it is the one.
                    if let found = try? await existingPull(repo: repo, base: base, head: head) { return found }
                    throw Self.gitea(error)
                } catch {
                    throw Self.gitea(error)
                }
            }
        }
    }

    /// The head branch's commit now; refuses the default and protected branches as a head.
    func checkedHead(repo: String, head: String) async throws(CommandError) -> String {
        do {
            let repository: GiteaRepository = try await client.get("/repos/\(repo)").value
            if head == repository.defaultBranch {
                throw CommandError(status: 403, reason: "\(head) is \(repo)'s default branch: a pull request from it is refused (Allegro never changes the default branch)")
            }
            let branch: GiteaBranch = try await client.get("/repos/\(repo)/branches/\(Self.segment(head))").value
            if branch.protected == true {
                throw CommandError(status: 403, reason: "\(head) is a protected branch: a pull request from it is refused")
            }
            guard let sha = branch.commit?.id, !sha.isEmpty else { throw CommandError(status: 409, reason: "Gitea shows no commit for \(head)") }
            return sha
        } catch let error as CommandError {
            throw error
        } catch let error as GiteaError {
            throw Self.gitea(error)
        } catch {
            throw CommandError(status: 500, reason: "\(error)")
        }
    }

    func existingPull(repo: String, base: String, head: String) async throws(GiteaError) -> [String: Any]? {
        do {
            let pull: GiteaPull = try await client.get("/repos/\(repo)/pulls/\(Self.segment(base))/\(Self.segment(head))").value
            return ["pull": pull.number, "html_url": pull.htmlURL ?? "", "head_sha": pull.head?.sha ?? "", "written": "found"]
        } catch where error.status == 404 {
            return nil
        }
    }

    // MARK: Merge a pull request

    func mergePull(repo: String, number: Int64, operation: String, approval: Approval) async throws(CommandError) -> [String: Any] {
        try checkRepo(repo)
        try Self.checkOperation(operation)
        let gate = try requireGate()
        let request = GiteaRecords.json(["statement": approval.statement, "signature": approval.signature])
        return try await journaled(operation: operation, kind: "merge_pr", repo: repo, number: number, request: request) { (resuming: Bool) async throws(CommandError) in
            let (pull, action) = try await pullNow(repo: repo, number: number)
            let approved = try gate.approve(action, statement: approval.statement, signature: approval.signature, resuming: resuming)
            if pull.merged == true { return ["pull": number, "merged": true, "html_url": pull.htmlURL ?? "", "written": "found"] }
            return try await lookThenWrite(operation) { () async throws(GiteaError) -> [String: Any]? in
                let pull: GiteaPull = try await client.get("/repos/\(repo)/pulls/\(number)").value
                return pull.merged == true ? ["pull": number, "merged": true, "html_url": pull.htmlURL ?? "", "written": "found"] : nil
            } write: { () async throws(CommandError) -> [String: Any] in
                let (_, current) = try await pullNow(repo: repo, number: number)
                try gate.recheck(approved, actionNow: current)
                // Gitea merges only if the head is still this commit: it cannot move after the check.
                let _: (Int, GiteaClient.Empty?) = try await Self.giteaWrite { () async throws(GiteaError) in
                    try await client.write(.POST, "/repos/\(repo)/pulls/\(number)/merge", body: ["do": "merge", "head_commit_id": current.headSHA])
                }
                return ["pull": number, "merged": true, "html_url": pull.htmlURL ?? "", "head_sha": current.headSHA, "written": "now"]
            }
        }
    }

    func pullNow(repo: String, number: Int64) async throws(CommandError) -> (GiteaPull, MergePullRequest) {
        let pull: GiteaPull
        do { pull = try await client.get("/repos/\(repo)/pulls/\(number)").value } catch { throw Self.gitea(error) }
        guard let head = pull.head, let base = pull.base, let sha = head.sha else {
            throw CommandError(status: 409, reason: "Gitea shows no head or base for pull request \(number)")
        }
        return (pull, MergePullRequest(repo: repo, pull: number, head: head.ref, headSHA: sha, base: base.ref))
    }

    // MARK: Shared

    /// Looks (`look`); if the effect is not there, writes once; after a lost answer, looks
    /// again before another write, a few times.
    func lookThenWrite(_ operation: String, look: () async throws(GiteaError) -> [String: Any]?,
                       write: () async throws(CommandError) -> [String: Any]) async throws(CommandError) -> [String: Any] {
        for attempt in 1 ... Self.writeAttempts {
            do {
                if let found = try await look() { return found }
            } catch where error.retryable && attempt < Self.writeAttempts {
                try? await Task.sleep(for: .milliseconds(500 << attempt))
                continue
            } catch {
                throw Self.gitea(error)
            }
            do {
                return try await write()
            } catch where error.status == 503 && attempt < Self.writeAttempts {
                log.log(.warning, "gitea_command_retry", ["operation": operation, "reason": error.reason, "next": "look, then write"])
                try? await Task.sleep(for: .milliseconds(500 << attempt))
            }
        }
        throw CommandError(status: 503, reason: "Gitea did not answer; the command stays journaled and is finished at the next try")
    }

    static func giteaWrite<T>(_ call: () async throws(GiteaError) -> T) async throws(CommandError) -> T {
        do { return try await call() } catch { throw gitea(error) }
    }

    /// A branch name as one path segment (`feature/x` is `feature%2Fx`).
    static func segment(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? name
    }

    /// Finishes a gated command a crash left pending, from its journaled request.
    func resumeGated(_ command: BridgeStore.PendingCommand, _ request: [String: Any]) async throws(CommandError) -> [String: Any] {
        let approval = Approval(statement: request["statement"] as? String ?? "", signature: request["signature"] as? String ?? "")
        switch command.kind {
        case "close_issue":
            return try await closeIssue(repo: command.repo, number: command.number, operation: command.operation, approval: approval)
        case "merge_pr":
            return try await mergePull(repo: command.repo, number: command.number, operation: command.operation, approval: approval)
        default:
            return try await createPull(repo: command.repo, operation: command.operation, head: request["head"] as? String ?? "",
                                        base: request["base"] as? String ?? "", title: request["title"] as? String ?? "",
                                        body: request["body"] as? String ?? "", approval: approval)
        }
    }
}
