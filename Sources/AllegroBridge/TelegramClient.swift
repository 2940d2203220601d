import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// What Telegram's Bot API answered to one `sendMessage`.
public enum TelegramOutcome: Sendable, Equatable {
    case accepted
    /// 429: wait this long, then send the same message again.
    case retryAfter(seconds: Int)
    /// 400 "can't parse entities": the HTML was refused (send it as plain text).
    case badMarkup(String)
    /// Any other 4xx (a wrong token, an unknown chat): sending again unchanged will not help
    /// until the configuration is fixed.
    case refused(status: Int, description: String)
    /// 5xx, no answer, or an answer that is not the API's: try again later.
    case unavailable(String)
}

/// Telegram's `sendMessage` over async-http-client. The token is part of the URL path (the
/// API's design), so it appears in nothing this type returns or logs: every text that could
/// hold it is scrubbed.
public struct TelegramClient: Sendable {
    let http: HTTPClient
    let base: String
    let token: String
    let chatID: String
    public static let timeoutSeconds: Int64 = 30
    static let maxAnswerBytes = 1 << 20

    public init(http: HTTPClient, base: String, token: String, chatID: String) {
        self.http = http
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.token = token
        self.chatID = chatID
    }

    public func send(_ text: String, html: Bool) async -> TelegramOutcome {
        var body: [String: Any] = ["text": text]
        // A numeric id is a number in the API; a @channel name is a string.
        body["chat_id"] = Int64(chatID).map { $0 as Any } ?? chatID
        if html { body["parse_mode"] = "HTML" }
        var request = HTTPClientRequest(url: "\(base)/bot\(token)/sendMessage")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        guard let data = try? JSONSerialization.data(withJSONObject: body) else {
            return .unavailable("the message could not be encoded")
        }
        request.body = .bytes(ByteBuffer(bytes: data))
        do {
            let response = try await http.execute(request, timeout: .seconds(Self.timeoutSeconds))
            let answer = try await response.body.collect(upTo: Self.maxAnswerBytes)
            return Self.outcome(status: Int(response.status.code), answer: Data(buffer: answer))
        } catch {
            return .unavailable(scrubbed("\(error)"))
        }
    }

    /// Reads the API's answer: `{"ok":true,...}` or `{"ok":false,"error_code":N,"description":...,"parameters":{"retry_after":S}}`.
    static func outcome(status: Int, answer: Data) -> TelegramOutcome {
        let object = (try? JSONSerialization.jsonObject(with: answer)) as? [String: Any]
        if (200 ..< 300).contains(status), object?["ok"] as? Bool == true { return .accepted }
        let description = (object?["description"] as? String).map { String($0.prefix(300)) } ?? "HTTP \(status)"
        if status == 429 {
            let parameters = object?["parameters"] as? [String: Any]
            let seconds = (parameters?["retry_after"] as? NSNumber)?.intValue ?? 1
            return .retryAfter(seconds: min(max(seconds, 1), 3600))
        }
        if status == 400, description.lowercased().contains("can't parse entities") { return .badMarkup(description) }
        let parameters = object?["parameters"] as? [String: Any]
        if let chat = (parameters?["migrate_to_chat_id"] as? NSNumber)?.int64Value {
            return .refused(status: status, description: description + " (the chat is now \(chat): set bridge.telegram_chat_id to it)")
        }
        if (400 ..< 500).contains(status) { return .refused(status: status, description: description) }
        return .unavailable(description)
    }

    private func scrubbed(_ text: String) -> String {
        token.isEmpty ? text : text.replacing(token, with: "(token)")
    }
}
