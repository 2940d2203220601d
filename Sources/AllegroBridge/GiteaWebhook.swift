import AllegroLog
import Crypto
import Foundation
import Hummingbird
import Synchronization

/// Which repositories a webhook said changed, for the poller to read at once instead of at its
/// next interval. Safe from any thread; bounded by the configured repositories.
final class PollTrigger: Sendable {
    private let wanted = Mutex(Set<String>())

    func request(_ repo: String) { wanted.withLock { _ = $0.insert(repo) } }

    /// The repositories asked for since the last call.
    func take() -> Set<String> {
        wanted.withLock { wanted in
            defer { wanted.removeAll() }
            return wanted
        }
    }
}

/// Gitea's webhooks (`POST /v1/gitea/webhook`), for sub-second latency; polling stays the safety
/// net. A delivery counts only with a valid `X-Gitea-Signature` (HMAC-SHA256 of the body with
/// `gitea.webhook_secret`, hex, compared in constant time), for a configured repository, and
/// once (`X-Gitea-Delivery`, remembered for the retention). It does not carry the data: it asks
/// the poller to read that repository now, so what Timmy gets is the same, once per change.
struct GiteaWebhook: Sendable {
    let secret: [UInt8]
    let repos: Set<String>
    let store: BridgeStore
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
        let repo = (object?["repository"] as? [String: Any])?["full_name"] as? String ?? ""
        guard repos.contains(repo) else {
            return CommandRoutes.json(GiteaRecords.json(["error": "\(repo) is not one of gitea.repos"]), status: .notFound)
        }
        let delivery = Self.header(request, "x-gitea-delivery") ?? ""
        let event = Self.header(request, "x-gitea-event") ?? ""
        do {
            guard try store.firstDelivery(delivery.isEmpty ? UUID().uuidString : delivery, nowMillis: Int64(Date().timeIntervalSince1970 * 1000)) else {
                return CommandRoutes.json(#"{"delivery":"already seen"}"#, status: .ok)
            }
        } catch {
            return CommandRoutes.json(GiteaRecords.json(["error": "cannot record the delivery: \(error)"]), status: .serviceUnavailable)
        }
        log.log(.info, "webhook_delivery", ["repo": repo, "event": event, "delivery": delivery])
        trigger.request(repo)
        return CommandRoutes.json(#"{"delivery":"accepted"}"#, status: .ok)
    }

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
