import AllegroRelay
import AllegroWire
import AllegroStore
import Foundation
import Hummingbird

/// The HTTP control port's routes. Read-only: nothing here changes the relay. Every answer is
/// live (`Cache-Control: no-store`). With a control token, every path but `/health` (which load
/// balancers poll) answers 401 unless the request carries `Authorization: Bearer TOKEN`
/// (compared in constant time).
///
/// - `GET /health`: 200 `{"status":"serving"}`; 503 with a `reason` when the spill cannot write,
///   the event loop is stuck, or the relay is stopping.
/// - `GET /metrics`: Prometheus text format.
/// - `GET /status`: `RelayStatus` as JSON (snake_case keys), as of the request.
/// - `GET /sessions[?limit=N]`: Hermes session summaries, newest first (default 100).
/// - `GET /sessions/{id}`: one session with counts by kind and producer; 404 when unknown.
public struct ControlRoutes: Sendable {
    let monitor: RelayMonitor
    let store: StateStore
    let metrics: MetricsExport
    let token: Token?

    public init(monitor: RelayMonitor, store: StateStore, metrics: MetricsExport, token: String? = nil) {
        self.monitor = monitor
        self.store = store
        self.metrics = metrics
        self.token = token.map(Token.init)
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("health") { _, _ in self.health() }
        if let token { router.add(middleware: BearerCheck(token: token)) }
        router.get("metrics") { _, _ in
            let status = await self.monitor.fresh()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(string: self.metrics.scrape(status))))
        }
        router.get("status") { _, _ in
            guard let status = await self.monitor.fresh() else {
                return Self.json(["error": "the relay is starting"], status: .serviceUnavailable)
            }
            return Self.json(status)
        }
        router.get("sessions") { request, _ in
            let text = request.uri.queryParameters.get("limit")
            guard let limit = text.map({ Int($0) }) ?? 100, (1 ... 10_000).contains(limit) else {
                return Self.json(["error": "limit must be a whole number from 1 to 10000, not \(text ?? "")"], status: .badRequest)
            }
            do { return Self.json(try self.store.sessions(limit: limit)) } catch {
                return Self.json(["error": "cannot read the state database: \(error)"], status: .internalServerError)
            }
        }
        router.get("sessions/:id") { _, context in
            let id = context.parameters.get("id") ?? ""
            do {
                guard let detail = try self.store.session(id: id) else {
                    return Self.json(["error": "no session \(id) is held (never seen, or removed by retention)"], status: .notFound)
                }
                return Self.json(detail)
            } catch {
                return Self.json(["error": "cannot read the state database: \(error)"], status: .internalServerError)
            }
        }
        return router
    }

    private func health() -> Response {
        switch monitor.health {
        case .serving:
            Self.json(["status": "serving"])
        case let .failing(reason):
            Self.json(["status": "failing", "reason": reason], status: .serviceUnavailable)
        case .stopping:
            Self.json(["status": "stopping", "reason": "the relay is shutting down"], status: .serviceUnavailable)
        }
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{\"error\":\"encoding failed\"}".utf8)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Answers 401 to a request without the control token as a bearer token; `/health` passes.
struct BearerCheck: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: Token

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" { return try await next(request, context) }
        let offered = request.headers[.authorization].flatMap { value -> Substring? in
            value.hasPrefix("Bearer ") ? value.dropFirst("Bearer ".count) : nil
        }
        guard let offered, Array(offered.utf8).withUnsafeBytes({ token.matches($0) }) else {
            return Response(status: .unauthorized,
                            headers: [.contentType: "application/json", .cacheControl: "no-store", .wwwAuthenticate: "Bearer"],
                            body: .init(byteBuffer: ByteBuffer(string: #"{"error":"this control port asks for its control token: Authorization: Bearer TOKEN (only /health is open)"}"#)))
        }
        return try await next(request, context)
    }
}
