import AllegroGitea
import AllegroLog
import AllegroPosix
import Crypto
import Foundation
import Hummingbird
import Synchronization

/// Gitea's webhooks (`POST /v1/gitea/webhook`), for sub-second latency; polling stays the safety
/// net. A delivery counts only with a valid `X-Gitea-Signature` (HMAC-SHA256 of the body with
/// `gitea.webhook_secret`, hex, compared in constant time), for a configured repository, and
/// once (`X-Gitea-Delivery`, remembered for the retention). A delivery that carries the issue
/// (issue and comment events) is published from its payload, through the same intake as a poll,
/// so a change is still published once, and a late delivery never brings back an older version;
/// any other delivery (pull request events, a repository not yet polled, a payload it cannot
/// read) makes the poller read that repository at once.
struct GiteaWebhook: Sendable {
    let secret: [UInt8]
    let repos: Set<String>
    let store: BridgeStore
    let intake: GiteaIntake
    let trigger: PollTrigger
    let log: EventLog
    static let maxBodyBytes = 4 << 20

    func add(to router: Router<BasicRequestContext>) {
        router.post("v1/gitea/webhook") { request, _ in
            await handle(request)
        }
    }

    func handle(_ request: Request) async -> Response {
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: Self.maxBodyBytes) } catch {
            return CommandRoutes.json(#"{"error":"the delivery is larger than 4 MiB"}"#, status: .contentTooLarge)
        }
        let bytes = Array(body.readableBytesView)
        guard let offered = Self.header(request, "x-gitea-signature"), Self.valid(signature: offered, body: bytes, secret: secret) else {
            log.log(.warning, "webhook_refused", ["reason": "no or wrong X-Gitea-Signature"])
            return CommandRoutes.json(#"{"error":"X-Gitea-Signature does not match the body and gitea.webhook_secret"}"#, status: .unauthorized)
        }
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
        let named = (object?["repository"] as? [String: Any])?["full_name"] as? String ?? ""
        // Gitea's owner and repository names are case-insensitive: the configured spelling is used.
        guard let repo = repos.first(where: { $0.lowercased() == named.lowercased() }) else {
            return CommandRoutes.json(GiteaRecords.json(["error": "\(named) is not one of gitea.repos"]), status: .notFound)
        }
        let delivery = Self.header(request, "x-gitea-delivery") ?? ""
        let event = Self.header(request, "x-gitea-event") ?? ""
        do {
            guard try store.firstDelivery(delivery.isEmpty ? UUID().uuidString : delivery, nowMillis: Self.nowMillis) else {
                return CommandRoutes.json(#"{"delivery":"already seen"}"#, status: .ok)
            }
        } catch {
            return CommandRoutes.json(GiteaRecords.json(["error": "cannot record the delivery: \(error)"]), status: .serviceUnavailable)
        }
        let taken = take(bytes, repo: repo)
        if !taken { trigger.request(repo) }
        log.log(.info, "webhook_delivery", ["repo": repo, "event": event, "delivery": delivery, "taken": taken ? "payload" : "poll"])
        return CommandRoutes.json(#"{"delivery":"accepted"}"#, status: .ok)
    }

    /// What an issue or comment event's payload says (Gitea's IssuePayload, IssueCommentPayload).
    struct Payload: Decodable {
        var action: String?
        var issue: GiteaIssue?
        var comment: GiteaComment?
    }

    /// Publishes what the payload carries; false when it is for the poller to read instead.
    func take(_ body: [UInt8], repo: String) -> Bool {
        guard let payload = try? JSONDecoder().decode(Payload.self, from: Data(body)), let issue = payload.issue else { return false }
        let deleted = payload.action == "deleted"
        var changes: [BridgeStore.Change] = []
        if let comment = payload.comment {
            guard !deleted, let change = GiteaRecords.change(repo: repo, comment: comment, number: issue.number) else { return false }
            changes = [GiteaRecords.change(repo: repo, issue: issue), change]
        } else {
            guard !deleted else { return false }
            changes = [GiteaRecords.change(repo: repo, issue: issue)]
        }
        do {
            // Before the repository's first poll, what is new to triage is not known yet.
            guard try store.polled(repo) != nil, let watchedSince = try store.firstPolled(repo) else { return false }
            let (triaged, undecided) = try intake.take(changes, repo: repo, watchedSince: watchedSince, nowMillis: Self.nowMillis,
                                                       newerOnly: true, source: "webhook")
            if triaged { trigger.requestResume() }
            // A change of the same second as the one published: a poll now tells which is newer.
            return !undecided
        } catch {
            log.log(.warning, "webhook_not_taken", ["repo": repo, "reason": "\(error)"])
            return false
        }
    }

    static var nowMillis: Int64 { Int64(Clock.wallNanos / 1_000_000) }

    /// A request header by its lowercase name.
    static func header(_ request: Request, _ name: String) -> String? {
        request.headers.first { $0.name.canonicalName == name }?.value
    }

    /// Gitea's signature: the lowercase hex HMAC-SHA256 of the body.
    static func valid(signature: String, body: [UInt8], secret: [UInt8]) -> Bool {
        let expected = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
        let hex = Array(expected.map { String(format: "%02x", $0) }.joined().utf8)
        let given = Array(signature.lowercased().utf8)
        guard given.count == hex.count else { return false }
        return zip(given, hex).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
