import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// GETs from a relay's HTTP control port.
public enum ControlHTTP {
    /// No cache: every answer is live, and ports (so URLs) are reused across relays.
    public static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        return URLSession(configuration: configuration)
    }()

    public struct Answer {
        public var status: Int
        public var body: Data
        public var text: String { String(decoding: body, as: UTF8.self) }

        public func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        }

        public func jsonArray() throws -> [[String: Any]] {
            try #require(try JSONSerialization.jsonObject(with: body) as? [[String: Any]])
        }
    }

    public static func get(_ relay: RelayProcess, _ path: String, bearer: String? = nil) async throws -> Answer {
        try await get(address: try #require(relay.httpAddress), path, bearer: bearer)
    }

    /// GET from a control port at `address` (HOST:PORT), with `Authorization: Bearer` if given.
    public static func get(address: String, _ path: String, bearer: String? = nil) async throws -> Answer {
        let url = try #require(URL(string: "http://\(address)\(path)"))
        var request = URLRequest(url: url)
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        request.timeoutInterval = 10
        request.cachePolicy = .reloadIgnoringLocalCacheData
        let (data, response) = try await session.data(for: request)
        return Answer(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: data)
    }

    /// Polls `path` every 50 ms until `done` holds or `seconds` pass; returns the last answer.
    public static func poll(_ relay: RelayProcess, _ path: String, seconds: Double = 10,
                     until done: (Answer) throws -> Bool) async throws -> Answer {
        let deadline = Date().addingTimeInterval(seconds)
        var answer = try await get(relay, path)
        while try !done(answer) && Date() < deadline {
            try await Task.sleep(nanoseconds: 50_000_000)
            answer = try await get(relay, path)
        }
        return answer
    }

    /// The value of an unlabelled sample, or of the labelled one given in full (`name{label="x"}`).
    public static func sample(_ exposition: String, _ series: String) -> Double? {
        for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }
}
