import AllegroApproval
import AllegroLog
import AllegroMessages
import AllegroPosix
import AllegroWire
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// `provide_model_access`: Timmy gets a `ModelEndpoint` (base URL, model, a scoped key, its
/// expiry) for an OpenAI-compatible endpoint on this bridge, which forwards to the configured
/// provider with Allegro's own key. Timmy never holds Allegro's key and Allegro never sees his.
///
/// - Timmy's routes (bearer `hermes.command_token`): `POST /v1/hermes/model-access`
///   `{"model","ttl_ms"}` issues a key; `GET /v1/hermes/model-access` lists them (never a key);
///   `POST /v1/hermes/model-access/{key_id}/revoke` `{}`.
/// - The endpoint (bearer: a scoped key): `GET /v1/model/models`, `POST /v1/model/chat/completions`.
///   A key works only for its model(s), until it expires or is revoked. A streamed answer is
///   passed through chunk by chunk as it arrives. Each answer's usage is counted against the key
///   and put on the stream as an `allegro.model_usage` record.
///
/// Keys are stored as SHA-256 only and never logged; the provider key is never in an answer, a
/// log line or a record (an upstream error that repeats it is redacted).
struct ModelProxy: Sendable {
    let settings: HermesSettings
    /// What Timmy is given as the base URL: `hermes.model_base_url`, else the bridge's port as
    /// bound (known once it listens: `bridge.http` may name port 0).
    let configuredBaseURL: String?
    let boundBaseURL = BoundURL()

    /// The base URL as bound, set once the port listens.
    final class BoundURL: Sendable {
        private let value = Mutex<String?>(nil)
        func set(host: String, port: Int) {
            let shown = host.contains(":") ? "[\(host)]" : host
            value.withLock { $0 = "http://\(shown):\(port)/v1/model" }
        }
        var current: String? { value.withLock { $0 } }
    }
    let store: BridgeStore
    let publisher: OutboxPublisher
    let http: HTTPClient
    let commandToken: Token?
    let log: EventLog

    static let usageKind = "allegro.model_usage"
    /// A limit on everything: a request body, an SSE line scanned for usage, an error body.
    static let maxRequestBytes = 4 << 20
    static let maxLineBytes = 1 << 20
    static let maxErrorBytes = 64 << 10
    /// How long the provider may take to answer (a long generation streams meanwhile).
    static let upstreamTimeoutMillis: Int64 = 600_000

    private static var nowMillis: Int64 { Int64(Clock.wallNanos / 1_000_000) }

    func add(to router: Router<BasicRequestContext>) {
        if let commandToken { addTimmy(to: router, token: commandToken) }
        router.get("v1/model/models") { request, _ in
            switch authorize(request) {
            case let .failure(refusal): return refusal.response
            case let .success(key):
                let data = key.models.map { ["id": $0, "object": "model", "owned_by": "allegro"] as [String: Any] }
                return Self.json(GiteaRecords.json(["object": "list", "data": data]), status: .ok)
            }
        }
        router.post("v1/model/chat/completions") { request, _ in
            switch authorize(request) {
            case let .failure(refusal): return refusal.response
            case let .success(key): return await forward(request, key: key)
            }
        }
    }

    // MARK: Timmy's routes

    private func addTimmy(to router: Router<BasicRequestContext>, token: Token) {
        let group = router.group("v1/hermes/model-access")
        group.post { request, _ in
            await CommandRoutes.answer("provide_model_access", request, token: token, log: log) { () async throws(CommandError) in
                let body = try await CommandRoutes.body(request, keys: ["model", "ttl_ms"])
                let model = body["model"] ?? ""
                guard settings.providerModels.contains(model) else {
                    throw CommandError(status: 400, reason: "model \(model) is not offered: hermes.provider_models are \(settings.providerModels.joined(separator: ", "))")
                }
                let text = body["ttl_ms"] ?? ""
                guard let ttl = text.isEmpty ? settings.modelKeyMillis : Int(text), (1_000 ... HermesSettings.maxModelKeyMillis).contains(ttl) else {
                    throw CommandError(status: 400, reason: "ttl_ms: \"\" (hermes.model_key_ms) or 1000 ... \(HermesSettings.maxModelKeyMillis)")
                }
                let id = "mk_" + Self.randomHex(8), key = "allegro-mk-" + Self.randomHex(24)
                let expires = Self.nowMillis + Int64(ttl)
                do {
                    try store.forgetModelKeys(expiredBefore: Self.nowMillis - Int64(HermesSettings.maxModelKeyMillis))
                    try store.issueModelKey(id: id, key: key, models: [model], expiresMillis: expires, nowMillis: Self.nowMillis)
                } catch {
                    throw CommandError(status: 500, reason: "cannot keep the key: \(error)")
                }
                log.log(.info, "model_key_issued", ["key_id": id, "model": model, "expires_ms": String(expires)])
                let base = configuredBaseURL ?? boundBaseURL.current ?? ""
                return GiteaRecords.json(["key_id": id, "base_url": base, "model": model, "key": key,
                                          "expires_at": UTCTimestamp.text(expires / 1000)])
            }
        }
        group.get { request, _ in
            await CommandRoutes.answer("model_access_keys", request, token: token, log: log) { () async throws(CommandError) in
                let keys: [BridgeStore.ModelKey]
                do { keys = try store.modelKeys() } catch { throw CommandError(status: 500, reason: "cannot read the keys: \(error)") }
                let now = Self.nowMillis
                return GiteaRecords.json(["keys": keys.map { key -> [String: Any] in
                    ["key_id": key.id, "models": key.models, "expires_at": UTCTimestamp.text(key.expiresMillis / 1000),
                     "state": key.revokedMillis != 0 ? "revoked" : key.expiresMillis <= now ? "expired" : "valid",
                     "requests": key.requests, "input_tokens": key.inputTokens, "output_tokens": key.outputTokens]
                }])
            }
        }
        group.post(":id/revoke") { request, context in
            await CommandRoutes.answer("revoke_model_access", request, token: token, log: log) { () async throws(CommandError) in
                _ = try await CommandRoutes.body(request, keys: [])
                let id = context.parameters.get("id") ?? ""
                let found: Bool
                do { found = try store.revokeModelKey(id: id, nowMillis: Self.nowMillis) } catch {
                    throw CommandError(status: 500, reason: "cannot revoke: \(error)")
                }
                guard found else { throw CommandError(status: 404, reason: "no key \(id)") }
                log.log(.info, "model_key_revoked", ["key_id": id])
                return GiteaRecords.json(["key_id": id, "state": "revoked"])
            }
        }
    }

    // MARK: The endpoint

    /// The scoped key of the request, valid now; or the OpenAI-style 401 that says why not.
    private func authorize(_ request: Request) -> Result<BridgeStore.ModelKey, ModelRefusal> {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "), header.utf8.count <= 512 else {
            return .failure(.init(Self.openAIError(401, "Authorization: Bearer KEY, the key from provide_model_access", code: "invalid_api_key")))
        }
        let key: BridgeStore.ModelKey?
        do { key = try store.modelKey(key: String(header.dropFirst(7))) } catch {
            return .failure(.init(Self.openAIError(500, "the bridge cannot read its keys", code: "server_error")))
        }
        guard let key else { return .failure(.init(Self.openAIError(401, "unknown key", code: "invalid_api_key"))) }
        if key.revokedMillis != 0 { return .failure(.init(Self.openAIError(401, "this key was revoked", code: "invalid_api_key"))) }
        if key.expiresMillis <= Self.nowMillis { return .failure(.init(Self.openAIError(401, "this key has expired", code: "invalid_api_key"))) }
        return .success(key)
    }

    struct ModelRefusal: Error {
        var response: Response
        init(_ response: Response) { self.response = response }
    }

    private func forward(_ request: Request, key: BridgeStore.ModelKey) async -> Response {
        let started = Clock.monotonicNanos
        guard let buffer = try? await request.body.collect(upTo: Self.maxRequestBytes) else {
            return Self.openAIError(413, "the request is larger than \(Self.maxRequestBytes) bytes", code: "request_too_large")
        }
        guard var body = (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any] else {
            return Self.openAIError(400, "the body must be one JSON object", code: "invalid_json")
        }
        guard let model = body["model"] as? String, key.models.contains(model) else {
            log.log(.warning, "model_refused", ["key_id": key.id, "reason": "model not allowed for this key"])
            return Self.openAIError(403, "this key may use \(key.models.joined(separator: ", ")) only", code: "model_not_allowed")
        }
        let stream = body["stream"] as? Bool ?? false
        // Usage in the last chunk of a stream (the provider sends it only when asked).
        if stream, body["stream_options"] == nil { body["stream_options"] = ["include_usage": true] }
        var upstream = HTTPClientRequest(url: settings.providerURL + "/chat/completions")
        upstream.method = .POST
        upstream.headers.add(name: "Authorization", value: "Bearer " + (settings.providerKey ?? ""))
        upstream.headers.add(name: "Content-Type", value: "application/json")
        if stream { upstream.headers.add(name: "Accept", value: "text/event-stream") }
        upstream.body = .bytes(ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: body)) ?? Data()))
        let response: HTTPClientResponse
        do { response = try await http.execute(upstream, timeout: .milliseconds(Self.upstreamTimeoutMillis)) } catch {
            log.log(.warning, "model_upstream_failed", ["key_id": key.id, "model": model, "reason": redacted("\(error)")])
            return Self.openAIError(502, "the provider did not answer", code: "upstream_unavailable")
        }
        guard response.status == .ok else {
            let text = (try? await response.body.collect(upTo: Self.maxErrorBytes)).map { String(buffer: $0) } ?? ""
            log.log(.warning, "model_upstream_refused", ["key_id": key.id, "model": model, "status": String(response.status.code)])
            // The provider refusing Allegro's own key is Allegro's problem, not Timmy's key's.
            if response.status == .unauthorized || response.status == .forbidden {
                return Self.openAIError(502, "the provider refused Allegro's credentials (\(response.status.code)); Timmy's key is fine",
                                        code: "upstream_auth_failed")
            }
            return Response(status: .init(code: Int(response.status.code)), headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(string: redacted(text))))
        }
        let contentType = response.headers.first(name: "Content-Type") ?? (stream ? "text/event-stream" : "application/json")
        let meter = UsageMeter(key: key.id, model: model, stream: stream, started: started, proxy: self)
        if !stream {
            guard let whole = try? await response.body.collect(upTo: Self.maxRequestBytes * 4) else {
                return Self.openAIError(502, "the provider's answer was cut or too large", code: "upstream_unavailable")
            }
            meter.scan(Array(whole.readableBytesView), whole: true)
            meter.finish()
            return Response(status: .ok, headers: [.contentType: contentType, .cacheControl: "no-store"], body: .init(byteBuffer: whole))
        }
        let upstreamBody = response.body
        return Response(status: .ok, headers: [.contentType: contentType, .cacheControl: "no-cache"], body: .init { writer in
            defer { meter.finish() }
            for try await chunk in upstreamBody {
                meter.scan(Array(chunk.readableBytesView), whole: false)
                try await writer.write(chunk)
            }
            try await writer.finish(nil)
        })
    }

    /// Counts one answer's usage (from the JSON answer, or the usage line of a stream) and, at the
    /// end, records it against the key and on the stream.
    final class UsageMeter: @unchecked Sendable {
        // @unchecked: used by one request's handler at a time, in order (scan, then finish).
        let key: String, model: String, stream: Bool, started: UInt64
        let proxy: ModelProxy
        var line: [UInt8] = []
        var usage: (input: Int64, output: Int64, total: Int64)?
        var firstByteNanos: UInt64?

        init(key: String, model: String, stream: Bool, started: UInt64, proxy: ModelProxy) {
            (self.key, self.model, self.stream, self.started, self.proxy) = (key, model, stream, started, proxy)
        }

        func scan(_ bytes: [UInt8], whole: Bool) {
            if firstByteNanos == nil, !bytes.isEmpty { firstByteNanos = Clock.monotonicNanos }
            if whole {
                take((try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any])
                return
            }
            for byte in bytes {
                if byte == 0x0A {
                    if line.starts(with: Array("data:".utf8)), line.count < ModelProxy.maxLineBytes,
                       String(decoding: line, as: UTF8.self).contains("\"usage\"") {
                        take((try? JSONSerialization.jsonObject(with: Data(line.dropFirst(5)))) as? [String: Any])
                    }
                    line.removeAll(keepingCapacity: true)
                } else if line.count <= ModelProxy.maxLineBytes {
                    line.append(byte)
                }
            }
        }

        private func take(_ object: [String: Any]?) {
            guard let usage = object?["usage"] as? [String: Any] else { return }
            let count = { (key: String) in (usage[key] as? NSNumber)?.int64Value ?? 0 }
            self.usage = (count("prompt_tokens"), count("completion_tokens"), count("total_tokens"))
        }

        func finish() {
            let millis = Int64((Clock.monotonicNanos - started) / 1_000_000)
            let input = usage?.input ?? 0, output = usage?.output ?? 0
            do { try proxy.store.recordModelUsage(id: key, inputTokens: input, outputTokens: output) } catch {
                proxy.log.log(.error, "model_usage_not_counted", ["key_id": key, "reason": "\(error)"])
            }
            var record: [String: Any] = ["key_id": key, "model": model, "stream": stream, "duration_ms": millis,
                                         "usage": usage.map { ["input_tokens": $0.input, "output_tokens": $0.output, "total_tokens": $0.total] } ?? NSNull()]
            if let firstByteNanos { record["first_byte_ms"] = Int64((firstByteNanos - started) / 1_000_000) }
            do {
                try proxy.store.enqueueRecords([(ModelProxy.usageKind, "model-access:" + key, GiteaRecords.json(record))], nowMillis: ModelProxy.nowMillis)
                proxy.publisher.poke()
            } catch {
                proxy.log.log(.error, "model_usage_not_published", ["key_id": key, "reason": "\(error)"])
            }
            proxy.log.log(.info, "model_answered", ["key_id": key, "model": model, "ms": String(millis), "input_tokens": String(input),
                                                    "output_tokens": String(output)])
        }
    }

    /// `text` with the provider key, if it appears, replaced.
    func redacted(_ text: String) -> String {
        guard let secret = settings.providerKey, !secret.isEmpty else { return text }
        return text.replacingOccurrences(of: secret, with: "[redacted]")
    }

    static func openAIError(_ status: Int, _ message: String, code: String) -> Response {
        let type = status == 401 ? "authentication_error" : status == 403 ? "permission_error" : status >= 500 ? "api_error" : "invalid_request_error"
        return json(GiteaRecords.json(["error": ["message": message, "type": type, "code": code]]), status: .init(code: status))
    }

    static func json(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func randomHex(_ bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return Hex.lower((0 ..< bytes).map { _ in UInt8.random(in: 0 ... 255, using: &generator) })
    }
}

extension ModelProxy.ModelRefusal: Sendable {}
