/// The bridge's Hermes duty (the `hermes:` section; keys in config/README.md): Timmy's
/// `run_session` through the API server of a Hermes gateway on this host (on with `apiURL`), and
/// `provide_model_access` through the provider (on with `providerURL`).
public struct HermesSettings: Sendable, Equatable {
    /// The Hermes gateway's API server, `http://127.0.0.1:8642`; empty: no Hermes duty.
    public var apiURL = ""
    /// Its key (`API_SERVER_KEY` on Hermes' side; `ALLEGRO_HERMES_API_KEY` here).
    public var apiKey: String?
    /// Bearer token of Timmy's Hermes API (`ALLEGRO_HERMES_COMMAND_TOKEN`); unset: no API.
    public var commandToken: String?
    /// Sessions run at once; more wait in the queue.
    public var maxSessions = 2
    /// Sessions waiting; beyond, a new one is refused (429).
    public var maxQueued = 16
    /// A session still running after this is stopped and reported `interrupted`.
    public var sessionTimeoutMillis = 1_800_000
    /// Models Timmy may ask for by name (Hermes' `model_routes` aliases); the default model
    /// (Hermes' own) is always allowed.
    public var models: [String] = []
    /// A finished session's result is kept this long for Timmy to read, then forgotten (no
    /// longer than the relay's buffer keeps the session's telemetry).
    public var keepResultsMillis = 86_400_000
    /// Timmy's public keys (an OpenSSH `allowed_signers` file) for `hermes_approve`; empty:
    /// every approval Hermes asks for is denied (Timmy can only deny).
    public var allowedSigners = ""
    /// How long an approval Hermes asks for waits for Timmy's answer; then it is denied. Hermes'
    /// own `approvals.timeout` must be longer, or Hermes denies first.
    public var approvalTimeoutMillis = 120_000

    /// `provide_model_access`: the OpenAI-compatible provider the bridge forwards to, with
    /// Allegro's own key; empty: no model access.
    public var providerURL = ""
    /// Allegro's provider key (`ALLEGRO_HERMES_PROVIDER_KEY`): never shown to Timmy, never logged.
    public var providerKey: String?
    /// The models a scoped key may be issued for.
    public var providerModels: [String] = []
    /// A scoped key's lifetime when Timmy names none; the longest he may ask for is a day.
    public var modelKeyMillis = 3_600_000
    static let maxModelKeyMillis = 86_400_000
    /// The base URL given to Timmy with a key (this bridge's model endpoint as he reaches it);
    /// empty: `http://` + `bridge.http` + `/v1/model`.
    public var modelBaseURL = ""

    public var offersModels: Bool { !providerURL.isEmpty }

    /// A limit on everything: what Timmy's prompt and Hermes' answers may weigh.
    static let maxPromptBytes = 64 << 10
    static let maxKeptResults = 1_000

    public init() {}

    /// Either half of the duty: sessions (`api_url`) or model access (`provider_url`).
    public var isOn: Bool { !apiURL.isEmpty || offersModels }

    /// `requireKey`: only the bridge needs it (the relay reads the same file and must never hold it).
    public func validate(requireKey: Bool) throws(BridgeSettings.Invalid) {
        guard isOn else { return }
        if !apiURL.isEmpty, !BridgeSettings.isSafeBaseURL(apiURL) {
            throw BridgeSettings.Invalid(key: "hermes.api_url", value: apiURL,
                                         allowed: "the Hermes API server's URL: https://, or plain http only to a loopback address (its key travels with every request)")
        }
        if requireKey, !apiURL.isEmpty, apiKey?.isEmpty ?? true {
            throw BridgeSettings.Invalid(key: "hermes.api_key", value: "(unset)", allowed: "the Hermes API server's key, in ALLEGRO_HERMES_API_KEY or the file")
        }
        if let commandToken, commandToken.utf8.count < 16 || commandToken.utf8.count > 255 {
            throw BridgeSettings.Invalid(key: "hermes.command_token", value: "(\(commandToken.utf8.count) bytes)", allowed: "16 ... 255 bytes")
        }
        for (key, value, range) in [("hermes.max_sessions", maxSessions, 1 ... 64),
                                    ("hermes.max_queued", maxQueued, 0 ... 10_000),
                                    ("hermes.session_timeout_ms", sessionTimeoutMillis, 1_000 ... 86_400_000),
                                    ("hermes.keep_results_ms", keepResultsMillis, 60_000 ... 7 * 86_400_000),
                                    ("hermes.approval_timeout_ms", approvalTimeoutMillis, 1_000 ... 86_400_000)] where !range.contains(value) {
            throw BridgeSettings.Invalid(key: key, value: String(value), allowed: "\(range.lowerBound) ... \(range.upperBound)")
        }
        if offersModels {
            guard BridgeSettings.isSafeBaseURL(providerURL) else {
                throw BridgeSettings.Invalid(key: "hermes.provider_url", value: providerURL,
                                             allowed: "the provider's OpenAI-compatible base URL: https://, or plain http only to a loopback address")
            }
            if requireKey, providerKey?.isEmpty ?? true {
                throw BridgeSettings.Invalid(key: "hermes.provider_key", value: "(unset)", allowed: "Allegro's provider key, in ALLEGRO_HERMES_PROVIDER_KEY or the file")
            }
            guard !providerModels.isEmpty else {
                throw BridgeSettings.Invalid(key: "hermes.provider_models", value: "[]", allowed: "the models a scoped key may be issued for (at least one)")
            }
        }
        guard (60_000 ... Self.maxModelKeyMillis).contains(modelKeyMillis) else {
            throw BridgeSettings.Invalid(key: "hermes.model_key_ms", value: String(modelKeyMillis), allowed: "60000 ... \(Self.maxModelKeyMillis)")
        }
        if !modelBaseURL.isEmpty, !(modelBaseURL.hasPrefix("http://") || modelBaseURL.hasPrefix("https://")) {
            throw BridgeSettings.Invalid(key: "hermes.model_base_url", value: modelBaseURL, allowed: "http(s)://HOST:PORT/v1/model as Timmy reaches this bridge, or empty")
        }
        for model in models + providerModels where !HermesSessionQueue.isModelName(model) {
            throw BridgeSettings.Invalid(key: "hermes.models", value: "\"\(model)\"", allowed: "model names of 1 ... 200 characters of letters, digits, - _ . : /")
        }
    }
}
