import AllegroRelay
import Logging

/// One configuration key: its name (in files and `--set`; `ALLEGRO_` + upper case in the
/// environment), what kind of value it takes, and where it goes in `AllegroSettings`. What each
/// key means is documented once, in `config/allegro.yaml` and `config/README.md`.
struct Setting: Sendable {
    enum Kind: Sendable {
        case integer(WritableKeyPath<AllegroSettings, Int> & Sendable)
        case text(WritableKeyPath<AllegroSettings, String> & Sendable)
        /// A token: read as a secret, never printed.
        case secret(WritableKeyPath<AllegroSettings, String?> & Sendable)
        case list(WritableKeyPath<AllegroSettings, [String]> & Sendable)
        case level
        case http
    }

    let key: String
    let kind: Kind
}

/// Every key `allegro relay` reads, in the order `config check` prints them.
enum SettingsCatalog {
    static let all: [Setting] = [
        Setting(key: "listen", kind: .text(\.relay.listen)),
        Setting(key: "http", kind: .http),
        Setting(key: "control_token", kind: .secret(\.controlToken)),
        Setting(key: "data_dir", kind: .text(\.relay.dataDirectory)),
        Setting(key: "relay_id", kind: .text(\.relay.relayID)),
        Setting(key: "producer_token", kind: .secret(\.relay.producerToken)),
        Setting(key: "collector_token", kind: .secret(\.relay.collectorToken)),
        Setting(key: "durable_collectors", kind: .list(\.relay.durableCollectors)),
        Setting(key: "ring_bytes", kind: .integer(\.relay.ringBytes)),
        Setting(key: "ring_records", kind: .integer(\.relay.ringRecords)),
        Setting(key: "max_connections", kind: .integer(\.relay.maxConnections)),
        Setting(key: "max_frame_bytes", kind: .integer(\.relay.maxFrameBytes)),
        Setting(key: "max_batch_records", kind: .integer(\.relay.maxBatchRecords)),
        Setting(key: "heartbeat_ms", kind: .integer(\.relay.heartbeatMillis)),
        Setting(key: "idle_timeout_ms", kind: .integer(\.relay.idleTimeoutMillis)),
        Setting(key: "handshake_timeout_ms", kind: .integer(\.relay.handshakeTimeoutMillis)),
        Setting(key: "collector_buffer_bytes", kind: .integer(\.relay.collectorBufferBytes)),
        Setting(key: "replay_threads", kind: .integer(\.relay.replayThreads)),
        Setting(key: "spill_fsync_interval_ms", kind: .integer(\.relay.spillFsyncIntervalMillis)),
        Setting(key: "spill_segment_bytes", kind: .integer(\.relay.spillSegmentBytes)),
        Setting(key: "spill_block_bytes", kind: .integer(\.relay.spillBlockBytes)),
        Setting(key: "spill_compression_level", kind: .integer(\.relay.spillCompressionLevel)),
        Setting(key: "retention_max_age_ms", kind: .integer(\.relay.retentionMaxAgeMillis)),
        Setting(key: "retention_max_bytes", kind: .integer(\.relay.retentionMaxBytes)),
        Setting(key: "shutdown_grace_ms", kind: .integer(\.relay.shutdownGraceMillis)),
        Setting(key: "log_level", kind: .level),
    ]

    static let byKey: [String: Setting] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })

    static var keyList: String { all.map(\.key).joined(separator: ", ") }
}
