import AllegroGitea
import AllegroLog
import AllegroPosix
import Foundation
import ServiceLifecycle
import Synchronization

/// What the Gitea duty is doing, for `/health`.
public struct GiteaHealth: Sendable, Codable, Equatable {
    /// "starting", "polling", "idle" or "failing".
    public var state = "starting"
    /// The bot account the token belongs to.
    public var login: String?
    public var lastPollMillis: Int64?
    public var recordsQueued = 0
    public var problem: String?
}

typealias GiteaHealthBoard = HealthBoard<GiteaHealth>

/// The Gitea duty's polling: at start it asks Gitea whose token it holds and refuses to run as
/// Timmy; then every `poll_interval_ms`, for each repository, it reads the issues and pull
/// requests updated since the last poll began (less the overlap) and the repository's comment
/// feed, and puts each new or changed one in the outbox (`BridgeStore`) as a `gitea.issue`,
/// `gitea.pull` or `gitea.comment` record, once per change (by `updated_at`). While Gitea is
/// unreachable it waits and tries again; the relay's side is the outbox publisher's.
struct GiteaPoller: Service {
    let settings: GiteaSettings
    let client: GiteaClient
    let store: BridgeStore
    let publisher: OutboxPublisher
    /// Where the changes go (the outbox, with triage).
    let intake: GiteaIntake
    /// Timmy's commands, whose pending ones are finished once Gitea answers.
    let commands: GiteaCommands
    /// Repositories a webhook asked to read now.
    let trigger: PollTrigger
    let health: GiteaHealthBoard
    let log: EventLog

    func run() async throws {
        defer { publisher.stop() }
        guard let login = try await whoAmI() else { return }
        health.update { $0.login = login }
        await commands.resumePending()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            health.update { $0.state = "polling" }
            var problem: String?
            for repo in settings.repos {
                do { try await poll(repo) } catch {
                    problem = "\(repo): \(error)"
                    log.log(.warning, "gitea_poll_failed", ["repo": repo, "reason": "\(error)"])
                }
            }
            try? store.forgetSeen(before: Self.nowMillis - Int64(settings.retentionMillis))
            let queued = (try? store.outboxCount()) ?? 0
            health.update { health in
                health.state = problem == nil ? "idle" : "failing"
                health.problem = problem ?? publisher.problem
                health.lastPollMillis = Self.nowMillis
                health.recordsQueued = queued
            }
            // Until the next poll, what a webhook asks is done at once.
            let next = ContinuousClock.now + .milliseconds(settings.pollIntervalMillis)
            while ContinuousClock.now < next && !Task.isShuttingDownGracefully && !Task.isCancelled {
                await trigger.wait(upTo: next - ContinuousClock.now)
                let (repos, resume) = trigger.take()
                if resume { await commands.resumePending() }
                for repo in repos.sorted() {
                    do { try await poll(repo) } catch {
                        log.log(.warning, "gitea_poll_failed", ["repo": repo, "reason": "\(error)"])
                    }
                }
            }
        }
    }

    static var nowMillis: Int64 { Int64(Clock.wallNanos / 1_000_000) }

    /// The token's account; nil when shutting down first. Throws when it is Timmy's.
    private func whoAmI() async throws -> String? {
        var delayMillis = 1_000
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let user = try await client.currentUser()
                if user.login.lowercased() == settings.sovereignLogin.lowercased() {
                    throw BridgeStartError("the Gitea token belongs to \(user.login), the sovereign account (gitea.sovereign_login): Allegro never acts as Timmy; give it a token of its own bot account")
                }
                log.log(.info, "gitea_connected", ["url": settings.url, "login": user.login])
                return user.login
            } catch let error as GiteaError where error.retryable {
                health.update { $0.state = "failing"; $0.problem = "\(error)" }
                log.log(.warning, "gitea_unreachable", ["reason": "\(error)", "retry_in_ms": String(delayMillis)])
                let wait = delayMillis
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(wait)) }
                delayMillis = min(delayMillis * 2, 60_000)
            } catch let error as GiteaError {
                throw BridgeStartError("Gitea refused the bridge's token: \(error)")
            }
        }
        return nil
    }

    /// One repository: its changed issues, pull requests and comments into the outbox.
    func poll(_ repo: String) async throws {
        let started = Self.nowMillis
        let polledBefore = try store.polled(repo)
        let previous = polledBefore ?? (started - Int64(settings.backfillMillis))
        let since = Self.rfc3339(previous - Int64(settings.pollOverlapMillis))
        let issues: [GiteaIssue] = try await client.getAll("/repos/\(repo)/issues", query: [("state", "all"), ("since", since)],
                                                           limit: settings.pageSize)
        let comments: [GiteaComment] = try await client.getAll("/repos/\(repo)/issues/comments", query: [("since", since)],
                                                               limit: settings.pageSize)
        var changes = issues.map { GiteaRecords.change(repo: repo, issue: $0) }
        changes += comments.compactMap { GiteaRecords.change(repo: repo, comment: $0) }
        // Triage: only issues opened since the repository was first polled (not the backfill).
        let watchedSince = polledBefore == nil ? nil : try store.firstPolled(repo)
        let (triaged, _) = try intake.take(changes, repo: repo, watchedSince: watchedSince, nowMillis: started, newerOnly: false, source: "poll")
        try store.setPolled(repo, atMillis: started)
        if triaged { await commands.resumePending() }
    }

    static func rfc3339(_ millis: Int64) -> String { RFC3339.string(millis: max(millis, 0)) }
}
