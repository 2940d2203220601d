import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The Hermes gateway's API server, as the bridge uses it (hermes-agent 0.19): start a run
/// (`POST /v1/runs`), follow its events (`GET /v1/runs/{id}/events`, server-sent events), read
/// its status, answer its approval, stop it. Every call carries the API server's key; nothing
/// here logs it. Answers are size-limited and decoded once.
struct HermesAPIClient: Sendable {
    let http: HTTPClient
    let baseURL: String
    let key: String

    struct Failure: Error, CustomStringConvertible {
        var status: Int?
        var description: String
    }

    /// A limit on everything: one answer, one event.
    static let maxAnswerBytes = 1 << 20
    static let maxEventBytes = 1 << 20

    /// Starts a run: its run id.
    func startRun(prompt: String, model: String?, timeoutMillis: Int64 = 30_000) async throws(Failure) -> String {
        var body: [String: String] = ["input": prompt]
        if let model { body["model"] = model }
        let object = try await call(.POST, "/v1/runs", body: body, timeoutMillis: timeoutMillis)
        guard let runID = object["run_id"] as? String, !runID.isEmpty else {
            throw Failure(status: nil, description: "POST /v1/runs answered no run_id")
        }
        return runID
    }

    /// What `GET /v1/runs/{id}` says of a run.
    struct RunStatus: Sendable {
        /// queued, running, waiting_for_approval, stopping, completed, failed, cancelled.
        var status: String
        var sessionID: String?
        var model: String?
        var output: String?
        var error: String?
        var usage: HermesSessionQueue.Usage?
        var ended: Bool { ["completed", "failed", "cancelled"].contains(status) }
    }

    func status(runID: String) async throws(Failure) -> RunStatus {
        let object = try await call(.GET, "/v1/runs/\(Self.escaped(runID))", body: nil, timeoutMillis: 10_000)
        return RunStatus(status: object["status"] as? String ?? "", sessionID: object["session_id"] as? String, model: object["model"] as? String,
                         output: object["output"] as? String, error: object["error"] as? String, usage: HermesRunEvent.usage(object["usage"]))
    }

    func stop(runID: String) async throws(Failure) {
        _ = try await call(.POST, "/v1/runs/\(Self.escaped(runID))/stop", body: [:], timeoutMillis: 10_000)
    }

    /// Answers the run's oldest pending approval: "once" or "deny".
    func answerApproval(runID: String, choice: String) async throws(Failure) {
        _ = try await call(.POST, "/v1/runs/\(Self.escaped(runID))/approval", body: ["choice": choice], timeoutMillis: 10_000)
    }

    /// The run's events in order, until the stream ends (after the run's last event).
    /// `onEvent` sees each as it arrives.
    func events(runID: String, maxMillis: Int64, _ onEvent: @Sendable (HermesRunEvent) async -> Void) async throws(Failure) {
        var request = HTTPClientRequest(url: baseURL + "/v1/runs/\(Self.escaped(runID))/events")
        request.headers.add(name: "Authorization", value: "Bearer " + key)
        request.headers.add(name: "Accept", value: "text/event-stream")
        do {
            let response = try await http.execute(request, timeout: .milliseconds(maxMillis))
            guard response.status == .ok else {
                throw Failure(status: Int(response.status.code), description: "GET /v1/runs/{id}/events answered \(response.status.code)")
            }
            var pending: [UInt8] = []
            var data: [UInt8] = []
            for try await chunk in response.body {
                pending.append(contentsOf: chunk.readableBytesView)
                // Lines end with LF (CR LF tolerated); an empty line ends an event.
                while let end = pending.firstIndex(of: 0x0A) {
                    var line = Array(pending[..<end])
                    pending.removeSubrange(...end)
                    if line.last == 0x0D { line.removeLast() }
                    if line.isEmpty {
                        if !data.isEmpty, let object = (try? JSONSerialization.jsonObject(with: Data(data))) as? [String: Any] {
                            await onEvent(HermesRunEvent(object))
                        }
                        data = []
                    } else if line.starts(with: Array("data:".utf8)) {
                        var value = line.dropFirst(5)
                        if value.first == 0x20 { value = value.dropFirst() }
                        if !data.isEmpty { data.append(0x0A) }
                        data.append(contentsOf: value)
                    }
                    // Comments (": keepalive") and other fields are not used.
                }
                guard pending.count <= Self.maxEventBytes, data.count <= Self.maxEventBytes else {
                    throw Failure(status: nil, description: "an event of more than \(Self.maxEventBytes) bytes")
                }
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(status: nil, description: "the run's events: \(error)")
        }
    }

    private func call(_ method: HTTPMethod, _ path: String, body: [String: String]?, timeoutMillis: Int64) async throws(Failure) -> [String: Any] {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer " + key)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data("{}".utf8)
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        let shown = "\(method.rawValue) \(path)"
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: .milliseconds(timeoutMillis))
            bytes = try await response.body.collect(upTo: Self.maxAnswerBytes)
        } catch {
            throw Failure(status: nil, description: "\(shown): \(error)")
        }
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any]
        guard (200 ..< 300).contains(response.status.code) else {
            let error = (object?["error"] as? [String: Any])?["message"] as? String ?? (object?["error"] as? String) ?? ""
            throw Failure(status: Int(response.status.code), description: "\(shown) answered \(response.status.code)\(error.isEmpty ? "" : ": " + error)")
        }
        guard let object else { throw Failure(status: Int(response.status.code), description: "\(shown): an answer that is not a JSON object") }
        return object
    }

    private static func escaped(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? value
    }
}

/// One event of a Hermes run (`GET /v1/runs/{id}/events`), as far as the bridge reads it.
enum HermesRunEvent: Sendable, Equatable {
    case toolStarted(tool: String, preview: String)
    case toolCompleted(tool: String, durationMillis: Int64?, error: Bool?)
    case approvalRequest(command: String, description: String)
    case completed(output: String, usage: HermesSessionQueue.Usage?)
    case failed(error: String)
    case cancelled
    case other

    init(_ object: [String: Any]) {
        let text = { (key: String) in object[key] as? String ?? "" }
        switch text("event") {
        case "tool.started": self = .toolStarted(tool: text("tool"), preview: String(text("preview").prefix(2_000)))
        case "tool.completed":
            self = .toolCompleted(tool: text("tool"), durationMillis: (object["duration"] as? Double).map { Int64($0 * 1000) }, error: object["error"] as? Bool)
        // The command whole, never cut: what Timmy approves is what runs (an event is at most
        // `maxEventBytes`; the bridge denies a command too long to show).
        case "approval.request": self = .approvalRequest(command: text("command"), description: String(text("description").prefix(2_000)))
        case "run.completed": self = .completed(output: text("output"), usage: Self.usage(object["usage"]))
        case "run.failed": self = .failed(error: String(text("error").prefix(2_000)))
        case "run.cancelled": self = .cancelled
        default: self = .other
        }
    }

    static func usage(_ value: Any?) -> HermesSessionQueue.Usage? {
        guard let object = value as? [String: Any] else { return nil }
        let count = { (key: String) in (object[key] as? NSNumber)?.int64Value ?? 0 }
        return .init(inputTokens: count("input_tokens"), outputTokens: count("output_tokens"), totalTokens: count("total_tokens"))
    }
}
