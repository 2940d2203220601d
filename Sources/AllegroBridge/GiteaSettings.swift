/// The bridge's Gitea duty (the `gitea:` section; keys in config/README.md). Off while `url`
/// is empty.
public struct GiteaSettings: Sendable, Equatable {
    /// `https://gitea.example`; empty: no Gitea duty.
    public var url = ""
    /// Allegro's own bot account's token (`ALLEGRO_GITEA_TOKEN`); never Timmy's.
    public var token: String?
    /// Repositories to poll, `owner/name`.
    public var repos: [String] = []
    public var pollIntervalMillis = 30_000
    /// Each poll asks for changes since the previous poll began, minus this (clocks differ, and
    /// Gitea sends no ETags on lists).
    public var pollOverlapMillis = 60_000
    /// The first poll of a repository looks back this far.
    public var backfillMillis = 86_400_000
    public var pageSize = 50
    /// Timmy's own Gitea login: the bridge refuses to run if its token belongs to it.
    public var sovereignLogin = "timmy"
    /// What was seen is forgotten after this (the relay's buffer keeps no longer: 7 days).
    public var retentionMillis = 7 * 86_400_000

    /// Timmy's statuses, each an exclusive label `status/NAME` (which must exist in the repository).
    public var statuses = ["triage", "in-progress", "blocked", "review", "done"]
    /// Triage of a new issue, by Timmy's rules: the status to set ("" none) and whether to post
    /// a receipt comment (an Allegro Report). Nothing else: no assignment, priority or choice.
    public var triageStatus = "triage"
    public var triageReceipt = true
    /// Timmy's public keys (an OpenSSH `allowed_signers` file, protocol/APPROVAL.md section 5)
    /// for the gated commands; empty: they are refused.
    public var allowedSigners = ""
    /// The secret Gitea signs its webhooks with (`ALLEGRO_GITEA_WEBHOOK_SECRET`); unset: no
    /// webhook route (polling alone).
    public var webhookSecret: String?
    /// Bearer token of Timmy's command API (`ALLEGRO_GITEA_COMMAND_TOKEN`); unset: no command API.
    public var commandToken: String?

    static let statusPrefix = "status/"
    static func statusLabel(_ status: String) -> String { statusPrefix + status }

    public init() {}

    public var isOn: Bool { !url.isEmpty }

    /// `requireToken`: only the bridge needs it (the relay reads the same file and must never
    /// hold a Gitea secret).
    public func validate(requireToken: Bool) throws(BridgeSettings.Invalid) {
        guard isOn else { return }
        guard BridgeSettings.isSafeBaseURL(url) else {
            throw BridgeSettings.Invalid(key: "gitea.url", value: url,
                                         allowed: "an https:// URL (plain http only to a loopback address), since the token travels with every request")
        }
        if requireToken, token?.isEmpty ?? true {
            throw BridgeSettings.Invalid(key: "gitea.token", value: "(unset)", allowed: "the bot account's token, in ALLEGRO_GITEA_TOKEN or the file")
        }
        guard !repos.isEmpty else { throw BridgeSettings.Invalid(key: "gitea.repos", value: "[]", allowed: "at least one owner/name") }
        for repo in repos {
            let parts = repo.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } }) else {
                throw BridgeSettings.Invalid(key: "gitea.repos", value: repo, allowed: "owner/name, letters, digits, - _ .")
            }
        }
        for (key, value, range) in [("gitea.poll_interval_ms", pollIntervalMillis, 1_000 ... 86_400_000),
                                    ("gitea.poll_overlap_ms", pollOverlapMillis, 0 ... 86_400_000),
                                    ("gitea.backfill_ms", backfillMillis, 0 ... 30 * 86_400_000),
                                    ("gitea.page_size", pageSize, 1 ... 50),
                                    ("gitea.retention_ms", retentionMillis, 3_600_000 ... 365 * 86_400_000)] where !range.contains(value) {
            throw BridgeSettings.Invalid(key: key, value: String(value), allowed: "\(range.lowerBound) ... \(range.upperBound)")
        }
        for status in statuses where status.isEmpty || status.utf8.count > 50 || status.contains(where: { $0 == "/" || $0 == " " || $0.isNewline }) {
            throw BridgeSettings.Invalid(key: "gitea.statuses", value: "\"\(status)\"", allowed: "names of 1 ... 50 characters without / or spaces (each is the label status/NAME)")
        }
        if !triageStatus.isEmpty && !statuses.contains(triageStatus) {
            throw BridgeSettings.Invalid(key: "gitea.triage_status", value: "\"\(triageStatus)\"", allowed: "one of gitea.statuses, or \"\" for none")
        }
        if let commandToken, commandToken.utf8.count < 16 || commandToken.utf8.count > 255 {
            throw BridgeSettings.Invalid(key: "gitea.command_token", value: "(\(commandToken.utf8.count) bytes)", allowed: "16 ... 255 bytes")
        }
        guard !sovereignLogin.isEmpty else {
            throw BridgeSettings.Invalid(key: "gitea.sovereign_login", value: "\"\"", allowed: "Timmy's Gitea login, which the bridge must never act as")
        }
    }
}
