/// An action on the outside world that Allegro may take only with Timmy's signed approval. Its
/// `approvalTarget` is what the statement's target fields must equal, key for key: a statement
/// for another repository, issue, branch or commit is not an approval of this action.
public protocol GatedAction: Sendable {
    /// The statement's `action` value.
    static var approvalName: String { get }
    /// The target fields (`repo`, `issue`, `head_sha`, ...) as a statement writes them.
    var approvalTarget: [String: String] { get }
}

/// Open a pull request from `head` (at exactly `headSHA`) into `base`.
public struct CreatePullRequest: GatedAction, Equatable {
    public static let approvalName = "create_pr"
    public var repo: String, head: String, headSHA: String, base: String
    public init(repo: String, head: String, headSHA: String, base: String) {
        (self.repo, self.head, self.headSHA, self.base) = (repo, head, headSHA, base)
    }
    public var approvalTarget: [String: String] { ["repo": repo, "head": head, "head_sha": headSHA, "base": base] }
}

/// Close an issue.
public struct CloseIssue: GatedAction, Equatable {
    public static let approvalName = "close_issue"
    public var repo: String, issue: Int64
    public init(repo: String, issue: Int64) { (self.repo, self.issue) = (repo, issue) }
    public var approvalTarget: [String: String] { ["repo": repo, "issue": String(issue)] }
}

/// Merge a pull request whose head is exactly `headSHA`.
public struct MergePullRequest: GatedAction, Equatable {
    public static let approvalName = "merge_pr"
    public var repo: String, pull: Int64, head: String, headSHA: String, base: String
    public init(repo: String, pull: Int64, head: String, headSHA: String, base: String) {
        (self.repo, self.pull, self.head, self.headSHA, self.base) = (repo, pull, head, headSHA, base)
    }
    public var approvalTarget: [String: String] {
        ["repo": repo, "pull": String(pull), "head": head, "head_sha": headSHA, "base": base]
    }
}

/// Let Hermes run one command it asked approval for: the Allegro Request `request` forwarded
/// it, and `commandSHA256` is the SHA-256 (lowercase hex) of the command's exact text.
public struct HermesApproval: GatedAction, Equatable {
    public static let approvalName = "hermes_approve"
    public var request: String, commandSHA256: String
    public init(request: String, commandSHA256: String) { (self.request, self.commandSHA256) = (request, commandSHA256) }
    public var approvalTarget: [String: String] { ["request": request, "command_sha256": commandSHA256] }
}

/// Proof that Timmy approved exactly this action: only `ApprovalVerifier` makes one (its
/// initializer is internal to this module), after every check in protocol/APPROVAL.md. Every
/// gated call takes one, so a path that skips approval does not compile. Right before the side
/// effect, `ApprovalVerifier.recheck` holds it again to the clock, the trust file and the action
/// as it is then (a branch that moved is no longer the approved one).
public struct Approved<Action: GatedAction>: Sendable {
    public let action: Action
    public let signer: String
    public let keyFingerprint: String
    public let nonce: String
    public let notAfterSeconds: Int64
    /// What was signed, and the signature, for the check at execution.
    let statement: [UInt8]
    let signature: [UInt8]

    init(action: Action, verified: ApprovalVerifier.Verified, signature: [UInt8]) {
        self.action = action
        signer = verified.signer
        keyFingerprint = verified.keyFingerprint
        nonce = verified.statement.nonce
        notAfterSeconds = verified.statement.notAfterSeconds
        statement = verified.statement.text
        self.signature = signature
    }
}
