import AllegroPosix
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// GETs JSON from a relay's HTTP control port, for `allegro status` and `allegro sessions`, with
/// the house's HTTP client (async-http-client's shared client: no cache, a 10 s deadline, bodies
/// up to 16 MiB). A control port that asks for a token gets `$ALLEGRO_CONTROL_TOKEN` as a bearer.
struct ControlClient {
    let address: String
    let token = ProcessInfo.processInfo.environment["ALLEGRO_CONTROL_TOKEN"]
    static let maxBodyBytes = 16 << 20

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init(address: String) throws {
        do { _ = try SocketAddress(parsing: address) } catch {
            throw Failure(description: "--http: \(error)")
        }
        self.address = address
    }

    /// The body of a 200 answer; anything else is a `Failure` saying what the relay answered.
    func get(_ path: String) async throws -> Data {
        var request = HTTPClientRequest(url: "http://\(address)\(path)")
        if let token, !token.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let status: HTTPResponseStatus, body: ByteBuffer
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            status = response.status
            body = try await response.body.collect(upTo: Self.maxBodyBytes)
        } catch {
            throw Failure(description: "cannot reach the relay's control port at \(address): \(error) (is `allegro relay` running, with --http \(address)?)")
        }
        let data = Data(body.readableBytesView)
        guard status == .ok else {
            let hint = status == .unauthorized ? (token == nil ? " (set ALLEGRO_CONTROL_TOKEN)" : " (check ALLEGRO_CONTROL_TOKEN)") : ""
            throw Failure(description: "\(path) answered HTTP \(status.code): \(String(decoding: data, as: UTF8.self))\(hint)")
        }
        return data
    }

    func decode<T: Decodable>(_ type: T.Type, from path: String) async throws -> T {
        let data = try await get(path)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do { return try decoder.decode(type, from: data) } catch {
            throw Failure(description: "\(path) answered JSON this allegro cannot read: \(error)")
        }
    }
}

/// Small text helpers for the terminal tables.
enum Table {
    /// Left-aligned columns separated by two spaces.
    static func render(_ rows: [[String]]) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func bytes(_ count: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count), unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func seconds(_ value: Double) -> String {
        if value < 1 { return String(format: "%.0f ms", value * 1000) }
        if value < 120 { return String(format: "%.1f s", value) }
        if value < 7200 { return String(format: "%.0f min", value / 60) }
        return String(format: "%.1f h", value / 3600)
    }

    static func time(_ nanos: UInt64) -> String {
        let date = Date(timeIntervalSince1970: Double(nanos) / 1e9)
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: date)
    }
}
