import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Why a Gitea call failed. Never holds the token: messages are built from statuses and
/// Gitea's own `message`, and transport errors are scrubbed.
public struct GiteaError: Error, Sendable, CustomStringConvertible {
    /// The HTTP status, when Gitea answered.
    public var status: Int?
    public var message: String
    /// Whether trying again later can help (no answer, 5xx, 429).
    public var retryable: Bool

    public var description: String { (status.map { "HTTP \($0): " } ?? "") + message }
}

/// Gitea's REST API (`/api/v1`) as Allegro's own bot account, over async-http-client.
///
/// Reads (`get`, `getAll`) are retried on no answer, timeouts and 5xx with capped, fully
/// jittered exponential backoff; a 429 waits its `Retry-After`. Writes are never retried here:
/// the caller looks first (a write may have been applied even when its answer was lost).
public struct GiteaClient: Sendable {
    public struct RetryPolicy: Sendable, Equatable {
        /// Tries of one read, the first included.
        public var attempts = 6
        public var baseDelayMillis = 250
        public var capDelayMillis = 30_000
        /// The longest a 429's `Retry-After` is honoured before the read gives up.
        public var maxRetryAfterSeconds = 300
        public var timeoutSeconds: Int64 = 30

        public init() {}
    }

    let http: HTTPClient
    /// `https://gitea.example/api/v1`
    public let apiBase: String
    let token: String
    public let policy: RetryPolicy
    /// Most bytes read from one answer (a page of 50 issues with long bodies fits many times).
    static let maxAnswerBytes = 32 << 20

    public init(http: HTTPClient, url: String, token: String, policy: RetryPolicy = RetryPolicy()) {
        self.http = http
        apiBase = (url.hasSuffix("/") ? String(url.dropLast()) : url) + "/api/v1"
        self.token = token
        self.policy = policy
    }

    /// The account the token belongs to (`GET /user`).
    public func currentUser() async throws(GiteaError) -> GiteaUser {
        try await get("/user").value
    }

    /// One GET, decoded, with the answer's headers; retried as the type says.
    public func get<T: Decodable & Sendable>(_ path: String, query: [(String, String)] = []) async throws(GiteaError)
        -> (value: T, headers: HTTPHeaders) {
        let url = try url(path, query)
        var attempt = 0
        while true {
            attempt += 1
            let answer = await send(.GET, url)
            switch answer {
            case let .success((status, headers, body)) where (200 ..< 300).contains(status):
                do { return (try JSONDecoder().decode(T.self, from: body), headers) } catch {
                    throw GiteaError(status: status, message: "GET \(path): the answer is not the spec's \(T.self): \(error)", retryable: false)
                }
            case let .success((status, headers, body)):
                let error = Self.error(status: status, body: body, method: "GET", path: path)
                guard error.retryable, attempt < policy.attempts else { throw error }
                if status == 429 {
                    let seconds = headers.first(name: "Retry-After").flatMap { Int($0) } ?? 1
                    guard seconds <= policy.maxRetryAfterSeconds else { throw error }
                    try await pause(millis: max(seconds, 1) * 1000)
                } else {
                    try await pause(millis: backoffMillis(attempt))
                }
            case let .failure(error):
                guard attempt < policy.attempts else { throw error }
                try await pause(millis: backoffMillis(attempt))
            }
        }
    }

    /// Every page of a list (`page` from 1, `limit` per page), at most `maxPages`. Gitea does
    /// not say "more" the same way everywhere: a count (`X-Total-Count`) is trusted first, then
    /// a `Link` header's `next` (some lists, such as the repository's comment feed, send a count
    /// and no `Link`), and with neither a full page means there may be another.
    public func getAll<T: Decodable & Sendable>(_ path: String, query: [(String, String)] = [], limit: Int = 50,
                                               maxPages: Int = 200) async throws(GiteaError) -> [T] {
        var items: [T] = []
        for page in 1 ... max(maxPages, 1) {
            let (batch, headers): ([T], HTTPHeaders) = try await get(path, query: query + [("page", String(page)), ("limit", String(limit))])
            items += batch
            let more: Bool
            if let total = headers.first(name: "X-Total-Count").flatMap({ Int($0) }) {
                more = items.count < total
            } else if let link = headers.first(name: "Link") {
                more = LinkHeader.url(link, rel: "next") != nil
            } else {
                more = batch.count >= limit
            }
            if batch.isEmpty || !more { return items }
        }
        throw GiteaError(status: nil, message: "GET \(path): more than \(maxPages) pages", retryable: false)
    }

    /// One write (POST, PATCH, PUT, DELETE) with a JSON body; never retried here.
    public func write<T: Decodable & Sendable>(_ method: HTTPMethod, _ path: String, body: [String: any Sendable]?) async throws(GiteaError)
        -> (status: Int, value: T?) {
        let url = try url(path, [])
        var data: Data?
        if let body {
            do { data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]) } catch {
                throw GiteaError(status: nil, message: "\(method) \(path): the body cannot be encoded", retryable: false)
            }
        }
        switch await send(method, url, body: data) {
        case let .success((status, _, answer)) where (200 ..< 300).contains(status):
            if T.self == Empty.self || answer.isEmpty { return (status, nil) }
            do { return (status, try JSONDecoder().decode(T.self, from: answer)) } catch {
                throw GiteaError(status: status, message: "\(method) \(path): the answer is not the spec's \(T.self)", retryable: false)
            }
        case let .success((status, _, answer)):
            throw Self.error(status: status, body: answer, method: method.rawValue, path: path)
        case let .failure(error):
            throw error
        }
    }

    /// For writes whose answer is not read.
    public struct Empty: Decodable, Sendable {}

    // MARK: Transport

    private func url(_ path: String, _ query: [(String, String)]) throws(GiteaError) -> String {
        guard var components = URLComponents(string: apiBase + path) else {
            throw GiteaError(status: nil, message: "not a URL: \(apiBase + path)", retryable: false)
        }
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        // `+` in a timestamp's offset must reach Gitea as a plus, not a space.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        guard let text = components.string else { throw GiteaError(status: nil, message: "not a URL: \(path)", retryable: false) }
        return text
    }

    private func send(_ method: HTTPMethod, _ url: String, body: Data? = nil) async -> Result<(Int, HTTPHeaders, Data), GiteaError> {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "token \(token)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await http.execute(request, timeout: .seconds(policy.timeoutSeconds))
            let answer = try await response.body.collect(upTo: Self.maxAnswerBytes)
            return .success((Int(response.status.code), response.headers, Data(answer.readableBytesView)))
        } catch {
            let text = token.isEmpty ? "\(error)" : "\(error)".replacingOccurrences(of: token, with: "(token)")
            return .failure(GiteaError(status: nil, message: "\(method) \(Self.pathOnly(url)): no answer: \(text)", retryable: true))
        }
    }

    static func pathOnly(_ url: String) -> String {
        URLComponents(string: url)?.path ?? url
    }

    static func error(status: Int, body: Data, method: String, path: String) -> GiteaError {
        let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
        let said = (object?["message"] as? String).map { String($0.prefix(300)) } ?? "no message"
        return GiteaError(status: status, message: "\(method) \(path): \(said)", retryable: status == 429 || status >= 500)
    }

    private func backoffMillis(_ attempt: Int) -> Int {
        let ceiling = min(policy.capDelayMillis, policy.baseDelayMillis << min(attempt - 1, 20))
        return Int.random(in: 0 ... max(ceiling, 1))
    }

    private func pause(millis: Int) async throws(GiteaError) {
        do { try await Task.sleep(for: .milliseconds(millis)) } catch {
            throw GiteaError(status: nil, message: "cancelled", retryable: false)
        }
    }
}
