import AllegroRelay
import Logging

/// One configuration key: its name (in files and `--set`; `ALLEGRO_` + upper case in the
/// environment), what kind of value it takes, and where it goes in `AllegroSettings`.
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
    let help: String

    var environmentName: String { "ALLEGRO_" + key.uppercased() }
}

/// Every key `allegro relay` reads, in the order `config check` prints them.
enum SettingsCatalog {
    static let all: [Setting] = [
        Setting(key: "listen", kind: .text(\.relay.listen), help: "data-plane address, HOST:PORT (numeric; port 0 picks one)"),
        Setting(key: "http", kind: .http, help: "HTTP control port, HOST:PORT, or off"),
        Setting(key: "data_dir", kind: .text(\.relay.dataDirectory), help: "data directory (spill, state database)"),
        Setting(key: "relay_id", kind: .text(\.relay.relayID), help: "this relay's name, sent in WELCOME"),
        Setting(key: "producer_token", kind: .secret(\.relay.producerToken), help: "token producers must present (unset: any, loopback only)"),
        Setting(key: "collector_token", kind: .secret(\.relay.collectorToken), help: "token collectors must present (unset: any, loopback only)"),
        Setting(key: "durable_collectors", kind: .list(\.relay.durableCollectors), help: "names of durable collectors (cursor kept across restarts)"),
        Setting(key: "ring_bytes", kind: .integer(\.relay.ringBytes), help: "bytes of record memory in the ring"),
        Setting(key: "ring_records", kind: .integer(\.relay.ringRecords), help: "records the ring can index"),
        Setting(key: "max_connections", kind: .integer(\.relay.maxConnections), help: "connections served at once"),
        Setting(key: "max_frame_bytes", kind: .integer(\.relay.maxFrameBytes), help: "largest frame accepted or sent"),
        Setting(key: "max_batch_records", kind: .integer(\.relay.maxBatchRecords), help: "most records in one PUBLISH or DELIVER"),
        Setting(key: "heartbeat_ms", kind: .integer(\.relay.heartbeatMillis), help: "PING a connection silent this long"),
        Setting(key: "idle_timeout_ms", kind: .integer(\.relay.idleTimeoutMillis), help: "close a connection silent this long"),
        Setting(key: "handshake_timeout_ms", kind: .integer(\.relay.handshakeTimeoutMillis), help: "close a connection without HELLO after this long"),
        Setting(key: "collector_buffer_bytes", kind: .integer(\.relay.collectorBufferBytes), help: "bytes queued to one collector"),
        Setting(key: "spill_fsync_interval_ms", kind: .integer(\.relay.spillFsyncIntervalMillis), help: "group-commit window; acks wait for the fsync"),
        Setting(key: "spill_segment_bytes", kind: .integer(\.relay.spillSegmentBytes), help: "spill segment size"),
        Setting(key: "spill_block_bytes", kind: .integer(\.relay.spillBlockBytes), help: "uncompressed bytes per spill block"),
        Setting(key: "spill_compression_level", kind: .integer(\.relay.spillCompressionLevel), help: "zlib level, 1 (fast) ... 9 (small)"),
        Setting(key: "retention_max_age_ms", kind: .integer(\.relay.retentionMaxAgeMillis), help: "spill segments older than this are removed"),
        Setting(key: "retention_max_bytes", kind: .integer(\.relay.retentionMaxBytes), help: "oldest segments removed beyond this size; 0: no limit"),
        Setting(key: "shutdown_grace_ms", kind: .integer(\.relay.shutdownGraceMillis), help: "on SIGTERM, wait this long for in-flight records to be acked"),
        Setting(key: "log_level", kind: .level, help: "trace, debug, info, notice, warning, error or critical"),
    ]

    static let byKey: [String: Setting] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })

    static var keyList: String { all.map(\.key).joined(separator: ", ") }
}
