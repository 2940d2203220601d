import AllegroWire
import Foundation

/// One test vector from protocol/vectors: the bytes and what a decoder must return.
struct Vector {
    let name: String
    let bytes: [UInt8]
    let frames: [NSDictionary]
    /// `code` is nil for a stream that ends inside a frame: a relay sends no ERROR for that.
    let error: (kind: String, code: String?, offset: Int)?
    let limits: DecodeLimits?
    let negotiate: [String: Any]?

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("protocol/vectors")

    static func all() throws -> [Vector] {
        let index = try Data(contentsOf: directory.appendingPathComponent("index.json"))
        let names = try JSONSerialization.jsonObject(with: index) as? [String] ?? []
        return try names.map(load)
    }

    static func load(_ name: String) throws -> Vector {
        let bytes = try Data(contentsOf: directory.appendingPathComponent(name + ".bin"))
        let json = try Data(contentsOf: directory.appendingPathComponent(name + ".json"))
        let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] ?? [:]
        let frames = (object["frames"] as? [[String: Any]] ?? []).map { NSDictionary(dictionary: $0) }
        var error: (String, String?, Int)?
        if let description = object["error"] as? [String: Any] {
            error = (description["kind"] as? String ?? "?", description["code"] as? String,
                     description["offset"] as? Int ?? -1)
        }
        var limits: DecodeLimits?
        if let description = object["limits"] as? [String: Any] {
            limits = DecodeLimits(maxFrameLength: description["max_frame"] as? Int ?? 0,
                                  maxBatchRecords: description["max_batch"] as? Int ?? 0)
        }
        return Vector(name: name, bytes: Array(bytes), frames: frames, error: error, limits: limits,
                      negotiate: object["negotiate"] as? [String: Any])
    }
}

/// What decoding a byte stream produced: each frame as parsed JSON, the error, where it struck.
struct DecodeOutcome {
    var frames: [NSDictionary] = []
    var error: WireError?
    var errorOffset = -1
    var negotiated: [UInt16?] = []

    /// Decodes `bytes` fed in chunks of the given sizes (cycled), then signals end of stream.
    static func decode(_ bytes: [UInt8], limits: DecodeLimits, chunks: [Int] = [Int.max]) -> DecodeOutcome {
        var outcome = DecodeOutcome()
        let buffer = InboundBuffer(limits: limits, initialCapacity: 64)
        var offset = 0
        var chunkIndex = 0
        bytes.withUnsafeBytes { all in
            while outcome.error == nil && offset < all.count {
                let size = min(max(chunks[chunkIndex % chunks.count], 1), all.count - offset)
                chunkIndex += 1
                let chunk = UnsafeRawBufferPointer(rebasing: all[offset ..< offset + size])
                offset += size
                do throws(WireError) {
                    try buffer.decodeAll(chunk) { frame in outcome.record(frame) }
                } catch {
                    outcome.error = error
                }
            }
        }
        if outcome.error == nil {
            do throws(WireError) { try buffer.finish() } catch { outcome.error = error }
        }
        if outcome.error != nil { outcome.errorOffset = buffer.consumedTotal }
        return outcome
    }

    mutating func record(_ frame: Frame) {
        let json = FrameJSON.render(frame)
        let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] ?? ["unparsable": json]
        frames.append(NSDictionary(dictionary: object))
        if case let .hello(hello) = frame { negotiated.append(hello.negotiate()) }
    }
}
