import AllegroBridge
import AllegroControl
import AllegroMessages
import AllegroPosix
import AllegroRelay
import AllegroSpill
import AllegroSupervisor
import Logging

/// One configuration key: its name (in files and `--set`; `ALLEGRO_` + upper case in the
/// environment), what kind of value it takes, and where it goes in `AllegroSettings`. What each
/// key means is documented once, in `config/allegro.yaml` and `config/README.md`.
struct Setting: Sendable {
    enum Kind: Sendable {
        case integer(WritableKeyPath<AllegroSettings, Int> & Sendable)
        /// Milliseconds with up to three decimals, held as microseconds (`DecimalMilliseconds`).
        case milliseconds(WritableKeyPath<AllegroSettings, Int> & Sendable)
        case text(WritableKeyPath<AllegroSettings, String> & Sendable)
        /// A token: read as a secret, never printed.
        case secret(WritableKeyPath<AllegroSettings, String?> & Sendable)
        case list(WritableKeyPath<AllegroSettings, [String]> & Sendable)
        case level
        case http
        /// Text read by `parse`, which sets the value or says what is allowed; `show` writes
        /// the value back as `parse` reads it.
        case parsed(parse: @Sendable (inout AllegroSettings, String) -> String?, show: @Sendable (AllegroSettings) -> String)
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
        Setting(key: "spill_fsync_interval_ms", kind: .milliseconds(\.relay.spillFsyncIntervalMicros)),
        Setting(key: "spill_segment_bytes", kind: .integer(\.relay.spillSegmentBytes)),
        Setting(key: "spill_block_bytes", kind: .integer(\.relay.spillBlockBytes)),
        Setting(key: "spill_preallocate_bytes", kind: .integer(\.relay.spillPreallocateBytes)),
        Setting(key: "spill_thread_nice_increment", kind: .integer(\.relay.spillThreadNiceIncrement)),
        Setting(key: "spill_compression_level", kind: .integer(\.relay.spillCompressionLevel)),
        Setting(key: "spill_codec", kind: .parsed(parse: { settings, text in
            guard let codec = SpillCodec(rawValue: text) else { return "expected one of " + SpillCodec.allCases.map(\.rawValue).joined(separator: ", ") }
            settings.relay.spillCodec = codec
            return nil
        }, show: { settings in settings.relay.spillCodec.rawValue })),
        Setting(key: "retention_max_age_ms", kind: .integer(\.relay.retentionMaxAgeMillis)),
        Setting(key: "retention_max_bytes", kind: .integer(\.relay.retentionMaxBytes)),
        Setting(key: "shutdown_grace_ms", kind: .integer(\.relay.shutdownGraceMillis)),
        Setting(key: "log_level", kind: .level),
        Setting(key: "alert_interval_ms", kind: .integer(\.watch.intervalMillis)),
        Setting(key: "alert_collector_away_ms", kind: .integer(\.watch.collectorAwayMillis)),
        Setting(key: "alert_retention_warning_ms", kind: .integer(\.watch.retentionWarningMillis)),
        Setting(key: "alert_disk_free_percent", kind: .integer(\.watch.diskFreePercent)),
        Setting(key: "alert_records_lost_hold_ms", kind: .integer(\.watch.recordsLostHoldMillis)),
        Setting(key: "daily_report_at", kind: .parsed(parse: { settings, text in
            guard let second = RelayWatchSettings.parseTimeOfDay(text) else { return "expected HH:MM or HH:MM:SS (UTC), or off" }
            settings.watch.dailyReportSecond = second
            return nil
        }, show: { settings in
            guard let second = settings.watch.dailyReportSecond else { return "off" }
            let parts = [second / 3600, second / 60 % 60] + (second % 60 == 0 ? [] : [second % 60])
            return parts.map { $0 < 10 ? "0\($0)" : String($0) }.joined(separator: ":")
        })),
        Setting(key: "bridge.http", kind: .parsed(parse: { settings, text in
            settings.bridge.http = text == "off" || text.isEmpty ? nil : text
            return nil
        }, show: { $0.bridge.http ?? "off" })),
        Setting(key: "bridge.relay", kind: .text(\.bridge.relay)),
        Setting(key: "bridge.relay_http", kind: .text(\.bridge.relayHTTP)),
        Setting(key: "bridge.relay_down_ms", kind: .integer(\.bridge.relayDownMillis)),
        Setting(key: "bridge.data_dir", kind: .text(\.bridge.dataDirectory)),
        Setting(key: "bridge.notifier_name", kind: .text(\.bridge.notifierName)),
        Setting(key: "bridge.telegram_api", kind: .text(\.bridge.telegramAPI)),
        Setting(key: "bridge.telegram_chat_id", kind: .text(\.bridge.telegramChatID)),
        Setting(key: "bridge.telegram_token_file", kind: .text(\.bridge.telegramTokenFile)),
        Setting(key: "bridge.telegram_min_interval_ms", kind: .integer(\.bridge.telegramMinIntervalMillis)),
        Setting(key: "bridge.group_wait_ms", kind: .integer(\.bridge.groupWaitMillis)),
        Setting(key: "bridge.group_interval_ms", kind: .integer(\.bridge.groupIntervalMillis)),
        Setting(key: "bridge.repeat_interval_ms", kind: .integer(\.bridge.repeatIntervalMillis)),
        Setting(key: "bridge.request_urgency", kind: .parsed(parse: { settings, text in
            guard let urgency = AllegroRequest.Urgency(rawValue: text) else { return "low, medium, high or critical" }
            settings.bridge.requestUrgency = urgency
            return nil
        }, show: { $0.bridge.requestUrgency.rawValue })),
        Setting(key: "bridge.reports", kind: .parsed(parse: { settings, text in
            guard let choice = BridgeSettings.ReportChoice(rawValue: text) else { return "daily, all or none" }
            settings.bridge.reports = choice
            return nil
        }, show: { $0.bridge.reports.rawValue })),
        Setting(key: "gitea.url", kind: .text(\.gitea.url)),
        Setting(key: "gitea.token", kind: .secret(\.gitea.token)),
        Setting(key: "gitea.repos", kind: .list(\.gitea.repos)),
        Setting(key: "gitea.poll_interval_ms", kind: .integer(\.gitea.pollIntervalMillis)),
        Setting(key: "gitea.poll_overlap_ms", kind: .integer(\.gitea.pollOverlapMillis)),
        Setting(key: "gitea.backfill_ms", kind: .integer(\.gitea.backfillMillis)),
        Setting(key: "gitea.page_size", kind: .integer(\.gitea.pageSize)),
        Setting(key: "gitea.sovereign_login", kind: .text(\.gitea.sovereignLogin)),
        Setting(key: "gitea.retention_ms", kind: .integer(\.gitea.retentionMillis)),
        Setting(key: "gitea.statuses", kind: .list(\.gitea.statuses)),
        Setting(key: "gitea.triage_status", kind: .text(\.gitea.triageStatus)),
        Setting(key: "gitea.triage_receipt", kind: .parsed(parse: { settings, text in
            guard let value = ["true": true, "false": false][text] else { return "true or false" }
            settings.gitea.triageReceipt = value
            return nil
        }, show: { $0.gitea.triageReceipt ? "true" : "false" })),
        Setting(key: "gitea.command_token", kind: .secret(\.gitea.commandToken)),
        Setting(key: "gitea.allowed_signers", kind: .text(\.gitea.allowedSigners)),
        Setting(key: "gitea.webhook_secret", kind: .secret(\.gitea.webhookSecret)),
        Setting(key: "hermes.api_url", kind: .text(\.hermes.apiURL)),
        Setting(key: "hermes.api_key", kind: .secret(\.hermes.apiKey)),
        Setting(key: "hermes.command_token", kind: .secret(\.hermes.commandToken)),
        Setting(key: "hermes.max_sessions", kind: .integer(\.hermes.maxSessions)),
        Setting(key: "hermes.max_queued", kind: .integer(\.hermes.maxQueued)),
        Setting(key: "hermes.session_timeout_ms", kind: .integer(\.hermes.sessionTimeoutMillis)),
        Setting(key: "hermes.models", kind: .list(\.hermes.models)),
        Setting(key: "hermes.keep_results_ms", kind: .integer(\.hermes.keepResultsMillis)),
        Setting(key: "hermes.allowed_signers", kind: .text(\.hermes.allowedSigners)),
        Setting(key: "hermes.approval_timeout_ms", kind: .integer(\.hermes.approvalTimeoutMillis)),
        Setting(key: "hermes.provider_url", kind: .text(\.hermes.providerURL)),
        Setting(key: "hermes.provider_key", kind: .secret(\.hermes.providerKey)),
        Setting(key: "hermes.provider_models", kind: .list(\.hermes.providerModels)),
        Setting(key: "hermes.model_key_ms", kind: .integer(\.hermes.modelKeyMillis)),
        Setting(key: "hermes.model_base_url", kind: .text(\.hermes.modelBaseURL)),
        Setting(key: "supervisor.http", kind: .parsed(parse: { settings, text in
            guard text == "off" || (try? SocketAddress(parsing: text)) != nil else { return "HOST:PORT with a numeric address, or off" }
            settings.supervisor.http = text
            return nil
        }, show: { $0.supervisor.http })),
        Setting(key: "supervisor.data_dir", kind: .text(\.supervisor.dataDirectory)),
        Setting(key: "supervisor.relay", kind: .text(\.supervisor.relay)),
        Setting(key: "supervisor.first_restart_ms", kind: .integer(\.supervisor.restart.firstDelayMillis)),
        Setting(key: "supervisor.max_restart_ms", kind: .integer(\.supervisor.restart.maxDelayMillis)),
        Setting(key: "supervisor.jitter_percent", kind: .integer(\.supervisor.restart.jitterPercent)),
        Setting(key: "supervisor.healthy_ms", kind: .integer(\.supervisor.restart.healthyMillis)),
        Setting(key: "supervisor.intensity_restarts", kind: .integer(\.supervisor.restart.intensityRestarts)),
        Setting(key: "supervisor.intensity_window_ms", kind: .integer(\.supervisor.restart.intensityWindowMillis)),
        Setting(key: "supervisor.systemd_poll_ms", kind: .integer(\.supervisor.systemdPollMillis)),
        Setting(key: "supervisor.syncthing_url", kind: .text(\.supervisor.syncthing.url)),
        Setting(key: "supervisor.syncthing_api_key_file", kind: .text(\.supervisor.syncthing.apiKeyFile)),
        Setting(key: "supervisor.syncthing_check_ms", kind: .integer(\.supervisor.syncthing.checkMillis)),
        Setting(key: "supervisor.syncthing_alert_ms", kind: .integer(\.supervisor.syncthing.alertMillis)),
    ]

    static let byKey: [String: Setting] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })

    static var keyList: String { all.map(\.key).joined(separator: ", ") }

    /// Sections of the file: a mapping whose keys are read as `SECTION.KEY`.
    static let sections = ["bridge", "gitea", "hermes", "supervisor"]

    /// A key of the file that is not a setting: `allegro supervise`'s list of services, read
    /// from the file only (a list of mappings has no environment or `--set` form).
    static let servicesKey = "services"
    /// Likewise: `allegro supervise`'s fleet (failover between hosts).
    static let fleetKey = "fleet"
}
