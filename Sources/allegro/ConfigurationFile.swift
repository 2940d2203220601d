import AllegroRelay
import Foundation

/// Reads relay settings from a JSON file, the environment and `KEY=VALUE` overrides, on top of
/// the embedded defaults. Every error names the key, the value and what is allowed.
enum ConfigurationFile {
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    /// The keys a file or `--set` may name, in the order `allegro relay --help` lists them.
    static let keys = [
        "listen", "data_dir", "relay_id", "producer_token", "collector_token", "durable_collectors",
        "ring_bytes", "ring_records", "max_connections", "max_frame_bytes", "max_batch_records",
        "heartbeat_ms", "idle_timeout_ms", "handshake_timeout_ms", "collector_buffer_bytes", "spill_fsync_interval_ms",
        "spill_segment_bytes", "spill_block_bytes", "spill_compression_level", "retention_max_age_ms",
        "retention_max_bytes", "log_level",
    ]

    /// Applies a JSON object file's keys to `configuration`.
    static func apply(file path: String, to configuration: inout RelayConfiguration, logLevel: inout RelayLog.Level) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Problem(description: "cannot read the configuration file \(path)")
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw Problem(description: "\(path) is not valid JSON: \(error.localizedDescription)")
        }
        guard let settings = object as? [String: Any] else {
            throw Problem(description: "\(path) must hold one JSON object of settings")
        }
        for key in settings.keys.sorted() {
            try set(key, settings[key] as Any, in: &configuration, logLevel: &logLevel, source: path)
        }
    }

    /// Applies `KEY=VALUE`.
    static func apply(override text: String, to configuration: inout RelayConfiguration, logLevel: inout RelayLog.Level) throws {
        guard let equals = text.firstIndex(of: "=") else {
            throw Problem(description: "--set \(text): expected KEY=VALUE, with KEY one of \(keys.joined(separator: ", "))")
        }
        let key = String(text[..<equals]), value = String(text[text.index(after: equals)...])
        let parsed: Any = key == "durable_collectors" ? value.split(separator: ",").map(String.init) : value
        try set(key, parsed, in: &configuration, logLevel: &logLevel, source: "--set")
    }

    /// Tokens from ALLEGRO_PRODUCER_TOKEN and ALLEGRO_COLLECTOR_TOKEN, when set.
    static func applyEnvironment(to configuration: inout RelayConfiguration) {
        let environment = ProcessInfo.processInfo.environment
        if let token = environment["ALLEGRO_PRODUCER_TOKEN"], !token.isEmpty { configuration.producerToken = token }
        if let token = environment["ALLEGRO_COLLECTOR_TOKEN"], !token.isEmpty { configuration.collectorToken = token }
    }

    private static func set(_ key: String, _ value: Any, in configuration: inout RelayConfiguration,
                            logLevel: inout RelayLog.Level, source: String) throws {
        func text() throws -> String {
            if let string = value as? String { return string }
            throw Problem(description: "\(source): \(key) = \(value): must be a string")
        }
        func integer() throws -> Int {
            if let number = value as? Int { return number }
            if let string = value as? String, let number = Int(string) { return number }
            throw Problem(description: "\(source): \(key) = \(value): must be a whole number")
        }
        switch key {
        case "listen": configuration.listen = try text()
        case "data_dir": configuration.dataDirectory = try text()
        case "relay_id": configuration.relayID = try text()
        case "producer_token": configuration.producerToken = try text()
        case "collector_token": configuration.collectorToken = try text()
        case "durable_collectors":
            guard let names = value as? [String] else {
                throw Problem(description: "\(source): durable_collectors must be a list of names")
            }
            configuration.durableCollectors = names
        case "ring_bytes": configuration.ringBytes = try integer()
        case "ring_records": configuration.ringRecords = try integer()
        case "max_connections": configuration.maxConnections = try integer()
        case "max_frame_bytes": configuration.maxFrameBytes = try integer()
        case "max_batch_records": configuration.maxBatchRecords = try integer()
        case "heartbeat_ms": configuration.heartbeatMillis = try integer()
        case "idle_timeout_ms": configuration.idleTimeoutMillis = try integer()
        case "handshake_timeout_ms": configuration.handshakeTimeoutMillis = try integer()
        case "collector_buffer_bytes": configuration.collectorBufferBytes = try integer()
        case "spill_fsync_interval_ms": configuration.spillFsyncIntervalMillis = try integer()
        case "spill_segment_bytes": configuration.spillSegmentBytes = try integer()
        case "spill_block_bytes": configuration.spillBlockBytes = try integer()
        case "spill_compression_level": configuration.spillCompressionLevel = try integer()
        case "retention_max_age_ms": configuration.retentionMaxAgeMillis = try integer()
        case "retention_max_bytes": configuration.retentionMaxBytes = try integer()
        case "log_level":
            let levels: [String: RelayLog.Level] = ["debug": .debug, "info": .info, "warning": .warning, "error": .error]
            guard let level = levels[try text()] else {
                throw Problem(description: "\(source): log_level = \(value): must be debug, info, warning or error")
            }
            logLevel = level
        default:
            throw Problem(description: "\(source): unknown key \"\(key)\"; the keys are \(keys.joined(separator: ", "))")
        }
    }
}
