import AllegroPosix
import AllegroRelay
import AllegroSupervisor
import Configuration
import Foundation
import Logging
import Synchronization
import SystemPackage
import Yams

/// Builds `AllegroSettings` with swift-configuration, from lowest to highest precedence: the
/// embedded defaults, a YAML or JSON file, `ALLEGRO_*` environment variables, then flags
/// (`--listen`, `--set KEY=VALUE`, ...). Every problem is a `SettingsError` naming the key.
public struct SettingsLoader: Sendable {
    /// The configuration file (`.yaml`, `.yml` or `.json`), if any.
    public var file: String?
    public var environment: [String: String]
    /// Values from the command line, by key, as typed.
    public var flags: [String: String]

    public init(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                flags: [String: String] = [:]) {
        self.file = file
        self.environment = environment
        self.flags = flags
    }

    /// Where each key's value came from: "default", "environment", "command line" or the file.
    public struct Loaded: Sendable {
        public var settings: AllegroSettings
        public var sources: [String: String]
    }

    public func load() async throws(SettingsError) -> Loaded {
        var providers: [any ConfigProvider] = [try flagProvider()]
        let environmentProvider = EnvironmentVariablesProvider(environmentVariables: environment)
        providers.append(KeyMappingProvider(upstream: environmentProvider) { key in
            AbsoluteConfigKey(["allegro"] + key.components, context: key.context)
        })
        var services: [ServiceSpec]?
        var fleet: FleetSpec?
        if let file {
            let (provider, listed, fleetSpec) = try await fileProvider(file)
            providers.append(provider)
            services = listed
            fleet = fleetSpec
        }
        var names = [0: "command line", 1: "environment"]
        if let file { names[2] = file }
        let reporter = LookupReporter(names: names)
        let reader = ConfigReader(providers: providers, accessReporter: reporter)

        var settings = AllegroSettings()
        for setting in SettingsCatalog.all {
            try read(setting, from: reader, reporter: reporter, into: &settings)
        }
        do { try settings.relay.validate() } catch {
            throw SettingsError(key: error.key, value: error.value, source: reporter.source(of: error.key), allowed: error.allowed)
        }
        settings.supervisor.services = services
        settings.supervisor.fleet = fleet
        if let (key, value, allowed) = settings.supervisor.problem() {
            throw SettingsError(key: key, value: value, source: reporter.source(of: key), allowed: allowed)
        }
        do {
            try settings.bridge.validate()
            try settings.gitea.validate(requireToken: false)
            try settings.hermes.validate(requireKey: false)
        } catch {
            throw SettingsError(key: error.key, value: error.value, source: reporter.source(of: error.key), allowed: error.allowed)
        }
        for (key, value, range) in [("alert_interval_ms", settings.watch.intervalMillis, 0 ... 86_400_000),
                                    ("alert_collector_away_ms", settings.watch.collectorAwayMillis, 0 ... Int(Int32.max) * 100),
                                    ("alert_retention_warning_ms", settings.watch.retentionWarningMillis, 0 ... Int(Int32.max) * 100),
                                    ("alert_disk_free_percent", settings.watch.diskFreePercent, 0 ... 99),
                                    ("alert_records_lost_hold_ms", settings.watch.recordsLostHoldMillis, 0 ... Int(Int32.max) * 100)]
            where !range.contains(value) {
            throw SettingsError(key: key, value: String(value), source: reporter.source(of: key), allowed: "\(range.lowerBound) ... \(range.upperBound)")
        }
        if let http = settings.http {
            let address: SocketAddress
            do { address = try SocketAddress(parsing: http) } catch {
                throw SettingsError(key: "http", value: http, source: reporter.source(of: "http"),
                                    allowed: error.reason + "; expected HOST:PORT with a numeric address, or off")
            }
            // Like `listen`: /status and /sessions show every session, collector and error.
            if !address.isLoopback && settings.controlToken == nil {
                throw SettingsError(key: "http", value: http, source: reporter.source(of: "http"),
                                    allowed: "a non-loopback control port needs control_token set (ALLEGRO_CONTROL_TOKEN); "
                                        + "every path but /health then asks for it as a bearer token")
            }
        }
        if let token = settings.controlToken, token.isEmpty || token.utf8.count > 255 {
            throw SettingsError(key: "control_token", value: "(\(token.utf8.count) bytes)", source: reporter.source(of: "control_token"),
                                allowed: "1 ... 255 bytes")
        }
        // The ring's sizes are powers of two: the value in force is shown, not the one asked for.
        var sources = reporter.sources()
        for (key, path) in [("ring_bytes", \AllegroSettings.relay.ringBytes), ("ring_records", \AllegroSettings.relay.ringRecords)] {
            let asked = settings[keyPath: path]
            var rounded = 1
            while rounded < asked { rounded <<= 1 }
            guard rounded != asked else { continue }
            settings[keyPath: path] = rounded
            sources[key] = (sources[key] ?? "default") + ", rounded up from \(asked) to a power of two"
        }
        if services != nil, let file { sources["services"] = file }
        if fleet != nil, let file { sources["fleet"] = file }
        if settings.relay.relayID.isEmpty && sources["relay_id"] == nil {
            sources["relay_id"] = "default: the data directory's own (DATA/relay_id, made at first start)"
        }
        return Loaded(settings: settings, sources: sources)
    }

    // MARK: Reading one key

    private func read(_ setting: Setting, from reader: ConfigReader, reporter: LookupReporter,
                      into settings: inout AllegroSettings) throws(SettingsError) {
        let key = ConfigKey(setting.key)
        func failed(_ allowed: String) -> SettingsError {
            let raw = reader.string(forKey: key).map { "\"\($0)\"" } ?? "(a value of another type)"
            return SettingsError(key: setting.key, value: raw, source: reporter.source(of: setting.key), allowed: allowed)
        }
        switch setting.kind {
        case let .integer(path):
            let value = reader.int(forKey: key)
            if reporter.failed(setting.key) { throw failed("expected a whole number") }
            if let value { settings[keyPath: path] = value }
        case let .milliseconds(path):
            let value = reader.string(forKey: key)
            if reporter.failed(setting.key) { throw failed(Self.millisecondsExpected) }
            if let value {
                guard let micros = DecimalMilliseconds.micros(value) else {
                    throw SettingsError(key: setting.key, value: "\"\(value)\"", source: reporter.source(of: setting.key),
                                        allowed: Self.millisecondsExpected)
                }
                settings[keyPath: path] = micros
            }
        case let .text(path):
            let value = reader.string(forKey: key)
            if reporter.failed(setting.key) { throw failed("expected text") }
            if let value, Self.isPrivateKey(value) {
                throw SettingsError(key: setting.key, value: "(not shown)", source: reporter.source(of: setting.key), allowed: Self.privateKeyRefusal)
            }
            if let value { settings[keyPath: path] = value }
        case let .secret(path):
            let value = reader.string(forKey: key, isSecret: true)
            if reporter.failed(setting.key) {
                throw SettingsError(key: setting.key, value: "(masked)", source: reporter.source(of: setting.key), allowed: "expected text")
            }
            if let value, Self.isPrivateKey(value) {
                throw SettingsError(key: setting.key, value: "(not shown)", source: reporter.source(of: setting.key), allowed: Self.privateKeyRefusal)
            }
            if let value, !value.isEmpty { settings[keyPath: path] = value }
        case let .list(path):
            let value = reader.stringArray(forKey: key)
            if reporter.failed(setting.key) { throw failed("expected a list of names (comma-separated in the environment and on the command line)") }
            if let value { settings[keyPath: path] = value.filter { !$0.isEmpty } }
        case .level:
            let value = reader.string(forKey: key)
            if reporter.failed(setting.key) { throw failed("expected a log level") }
            if let value {
                guard let level = Logger.Level(rawValue: value.lowercased()) else {
                    throw SettingsError(key: setting.key, value: "\"\(value)\"", source: reporter.source(of: setting.key),
                                        allowed: "trace, debug, info, notice, warning, error or critical")
                }
                settings.logLevel = level
            }
        case .http:
            let value = reader.string(forKey: key)
            if reporter.failed(setting.key) { throw failed("expected HOST:PORT or off") }
            if let value { settings.http = value == "off" || value.isEmpty ? nil : value }
        case let .parsed(parse, _):
            let value = reader.string(forKey: key)
            if reporter.failed(setting.key) { throw failed("expected text") }
            if let value, let allowed = parse(&settings, value) {
                throw SettingsError(key: setting.key, value: "\"\(value)\"", source: reporter.source(of: setting.key), allowed: allowed)
            }
        }
    }

    static let millisecondsExpected = "expected milliseconds: a whole number or up to three decimals (0.25 is 250 µs)"

    /// Private key material of any kind (OpenSSH, PEM): Allegro never holds a private key, of
    /// Timmy's or anyone's; tokens and names never look like one.
    static func isPrivateKey(_ value: String) -> Bool {
        value.contains("PRIVATE KEY-----")
    }

    static let privateKeyRefusal = "this is private key material, and Allegro never holds a private key (Timmy signs "
        + "approvals on his own machine; Allegro is given only public keys, in an allowed_signers file)"

    // MARK: Providers

    /// Command-line values, typed by their key's kind so the reader can use them.
    private func flagProvider() throws(SettingsError) -> InMemoryProvider {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, text) in flags {
            guard let setting = SettingsCatalog.byKey[key] else {
                throw SettingsError("unknown configuration key \"\(key)\" on the command line; the keys are \(SettingsCatalog.keyList)")
            }
            let content: ConfigContent
            switch setting.kind {
            case .integer:
                guard let number = Int(text) else {
                    throw SettingsError(key: key, value: "\"\(text)\"", source: "command line", allowed: "expected a whole number")
                }
                content = .int(number)
            case .list:
                content = .stringArray(text.split(separator: ",").map(String.init))
            case .secret, .text, .level, .http, .parsed, .milliseconds:
                content = .string(text)
            }
            values[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(content, isSecret: { if case .secret = setting.kind { true } else { false } }())
        }
        return InMemoryProvider(name: "command line", values: values)
    }

    /// The file's provider, after checking that it names only known keys with single values
    /// (swift-configuration ignores keys nobody reads: a misspelt key would silently do nothing).
    private func fileProvider(_ path: String) async throws(SettingsError) -> (any ConfigProvider, [ServiceSpec]?, FleetSpec?) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SettingsError("cannot read the configuration file \(path)")
        }
        let isJSON = path.hasSuffix(".json")
        guard isJSON || path.hasSuffix(".yaml") || path.hasSuffix(".yml") else {
            throw SettingsError("\(path): a configuration file must end in .yaml, .yml or .json")
        }
        let top: Any?
        do {
            if isJSON {
                top = try JSONSerialization.jsonObject(with: data)
            } else {
                top = try Yams.load(yaml: String(decoding: data, as: UTF8.self))
            }
        } catch {
            throw SettingsError("\(path) is not valid \(isJSON ? "JSON" : "YAML"): \(error)")
        }
        var services: [ServiceSpec]?
        var fleet: FleetSpec?
        // The settings without the services list and the fleet, which swift-configuration cannot
        // hold (lists of mappings); false when the file has neither and can be read as it is.
        var withoutServices = false
        if let top {
            guard var mapping = top as? [String: Any] else {
                throw SettingsError("\(path) must hold one mapping of settings (key: value)")
            }
            let listed = mapping.removeValue(forKey: SettingsCatalog.servicesKey)
            let fleetValue = mapping.removeValue(forKey: SettingsCatalog.fleetKey)
            if listed != nil || fleetValue != nil {
                withoutServices = true
                do { (services, fleet) = try ServiceSpecParser.parse(services: listed, fleet: fleetValue) } catch {
                    throw SettingsError(key: error.key, value: error.value, source: path, allowed: error.allowed)
                }
            }
            var entries = mapping.sorted(by: { $0.key < $1.key })
            // A section (`bridge:`) holds its keys one level down: `bridge.http` and so on.
            for section in SettingsCatalog.sections {
                guard let index = entries.firstIndex(where: { $0.key == section }) else { continue }
                guard let inner = entries[index].value as? [String: Any] else {
                    throw SettingsError(key: section, value: "(not a mapping)", source: path, allowed: "a section: a mapping of its keys")
                }
                entries.remove(at: index)
                entries += inner.sorted(by: { $0.key < $1.key }).map { (key: section + "." + $0.key, value: $0.value) }
            }
            for (key, value) in entries {
                guard SettingsCatalog.byKey[key] != nil else {
                    throw SettingsError("\(path): unknown configuration key \"\(key)\"; the keys are \(SettingsCatalog.keyList)")
                }
                if value is [String: Any] {
                    throw SettingsError(key: key, value: "(a mapping)", source: path, allowed: "expected a single value")
                }
                if value is NSNull {
                    // YAML's ~ would otherwise be read as the text "~" (a token of "~").
                    throw SettingsError(key: key, value: "null", source: path,
                                        allowed: "leave the key out (or comment it out) to keep its default")
                }
            }
        }
        do {
            // Checked above as strict JSON; JSON is YAML, so one provider reads both.
            guard withoutServices else { return (try await FileProvider<YAMLSnapshot>(filePath: FilePath(path)), services, fleet) }
            // The provider reads files: a private copy without the list, read at once, then removed.
            // Made from the file's own nodes, so every other value keeps its text as written (a
            // round trip through Swift values would turn `off` into false and 0123 into 83).
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-config-\(UUID().uuidString).yaml").path
            guard case let .mapping(mapping)? = try Yams.compose(yaml: String(decoding: data, as: UTF8.self)) else {
                throw SettingsError("\(path) must hold one mapping of settings (key: value)")
            }
            let kept = mapping.filter { $0.key.string != SettingsCatalog.servicesKey && $0.key.string != SettingsCatalog.fleetKey }
            let text = try Yams.serialize(node: .mapping(Node.Mapping(kept.map { ($0.key, $0.value) }, mapping.tag, mapping.style)))
            do {
                // Mode 0600 from the start: the file may hold tokens.
                let file = try File.open(copy, create: true)
                defer { file.close() }
                try file.write(Array(text.utf8), at: 0)
            } catch {
                throw SettingsError("\(path): cannot write a temporary copy without its services list at \(copy): \(error)")
            }
            defer { try? FileManager.default.removeItem(atPath: copy) }
            return (try await FileProvider<YAMLSnapshot>(filePath: FilePath(copy)), services, fleet)
        } catch let error as SettingsError {
            throw error
        } catch {
            throw SettingsError("\(path) cannot be read as configuration: \(error)")
        }
    }
}

/// Watches the reader's lookups: which provider answered each key, and which keys had a value
/// that could not be converted to the type asked for.
final class LookupReporter: AccessReporter {
    private struct State {
        var sources: [String: String] = [:]
        var failures: Set<String> = []
    }

    private let names: [Int: String]
    private let state = Mutex(State())

    init(names: [Int: String]) { self.names = names }

    func report(_ event: AccessEvent) {
        let key = event.metadata.key.components.joined(separator: ".")
        var failed = event.conversionError != nil
        if case .failure = event.result { failed = true }
        var source: String?
        for (index, result) in event.providerResults.enumerated() {
            switch result.result {
            case let .success(lookup) where lookup.value != nil:
                if source == nil { source = names[index] ?? result.providerName }
            case .failure:
                failed = true
                if source == nil { source = names[index] ?? result.providerName }
            default:
                continue
            }
        }
        state.withLock { state in
            if let source { state.sources[key] = source }
            if failed { state.failures.insert(key) } else { state.failures.remove(key) }
        }
    }

    func failed(_ key: String) -> Bool { state.withLock { $0.failures.contains(key) } }
    func source(of key: String) -> String? { state.withLock { $0.sources[key] } }
    func sources() -> [String: String] { state.withLock { $0.sources } }
}
