import Foundation

/// Reads the configuration file's `services` list (YAML or JSON, already parsed into
/// dictionaries, arrays and scalars) into `ServiceSpec`s, refusing what it does not know: an
/// unknown key, a missing one, a value of the wrong type or range, two services of one name.
/// Every error names the key path.
public enum ServiceSpecParser {
    static let serviceKeys: Set<String> = ["name", "command", "systemd", "environment", "directory", "probe", "stop_grace_ms", "duty", "pass_environment"]
    static let probeKeys: Set<String> = ["http", "tcp", "command", "interval_ms", "timeout_ms", "failures", "grace_ms"]
    /// A limit on everything: more services than this is a mistake, not a host.
    public static let maxServices = 64

    /// The file's `services` and `fleet` together: a service's duty must be one of the fleet's.
    public static func parse(services: Any?, fleet: Any?) throws(ServiceSpecError) -> ([ServiceSpec]?, FleetSpec?) {
        let specs = try services.map { value throws(ServiceSpecError) in try parse(value) }
        let fleetSpec = try fleet.map { value throws(ServiceSpecError) in try FleetSpecParser.parse(value) }
        for (index, spec) in (specs ?? []).enumerated() {
            guard let duty = spec.duty else { continue }
            guard let fleetSpec, fleetSpec.duties[duty] != nil else {
                throw ServiceSpecError(key: "services[\(index)].duty", value: quoted(duty),
                                       allowed: "a duty of fleet.duties (\(fleetSpec?.duties.keys.sorted().joined(separator: ", ") ?? "no fleet is configured"))")
            }
        }
        return (specs, fleetSpec)
    }

    public static func parse(_ value: Any) throws(ServiceSpecError) -> [ServiceSpec] {
        guard let list = value as? [Any] else {
            throw ServiceSpecError(key: "services", value: "(not a list)", allowed: "a list of services, each a mapping")
        }
        guard list.count <= maxServices else {
            throw ServiceSpecError(key: "services", value: "(\(list.count) services)", allowed: "at most \(maxServices)")
        }
        var specs: [ServiceSpec] = []
        for (index, item) in list.enumerated() {
            let spec = try service(item, at: "services[\(index)]")
            if specs.contains(where: { $0.name == spec.name }) {
                throw ServiceSpecError(key: "services[\(index)].name", value: quoted(spec.name), allowed: "each service's name once")
            }
            specs.append(spec)
        }
        return specs
    }

    static func service(_ item: Any, at path: String) throws(ServiceSpecError) -> ServiceSpec {
        let map = try mapping(item, at: path, keys: serviceKeys)
        guard let name = map["name"] as? String, isName(name) else {
            throw ServiceSpecError(key: path + ".name", value: shown(map["name"]), allowed: "1 ... 64 characters of a-z, 0-9, _ and -")
        }
        let kind: ServiceSpec.Kind
        switch (map["command"], map["systemd"]) {
        case let (command?, nil):
            kind = .command(try arguments(command, at: path + ".command"))
        case let (nil, unit?):
            guard let unit = unit as? String, isUnit(unit) else {
                throw ServiceSpecError(key: path + ".systemd", value: shown(unit), allowed: "a unit name such as uni-wizard.service")
            }
            kind = .systemd(unit: unit)
        default:
            throw ServiceSpecError(key: path, value: "(\(name))", allowed: "exactly one of command (a list: program and arguments) or systemd (a unit name)")
        }
        var spec = ServiceSpec(name: name, kind: kind)
        if let environment = map["environment"] {
            guard case .command = kind, let pairs = environment as? [String: Any] else {
                throw ServiceSpecError(key: path + ".environment", value: shown(environment), allowed: "a mapping of NAME: text, for a command")
            }
            for (key, value) in pairs {
                guard isVariable(key), let text = scalarText(value) else {
                    throw ServiceSpecError(key: path + ".environment." + key, value: shown(value), allowed: "a variable name (A-Z, 0-9, _) and a text")
                }
                spec.environment[key] = text
            }
        }
        if let pass = map["pass_environment"] {
            guard case .command = kind, let names = pass as? [Any], names.count <= 256,
                  names.allSatisfy({ ($0 as? String).map { isVariable($0.hasSuffix("*") ? String($0.dropLast()) : $0) } == true }) else {
                throw ServiceSpecError(key: path + ".pass_environment", value: shown(pass),
                                       allowed: "a list of variable names (or prefixes ending in *) passed from the supervisor's environment, for a command")
            }
            spec.passEnvironment = names.compactMap { $0 as? String }
        }
        if let directory = map["directory"] {
            guard case .command = kind, let text = directory as? String, text.hasPrefix("/") else {
                throw ServiceSpecError(key: path + ".directory", value: shown(directory), allowed: "an absolute path, for a command")
            }
            spec.directory = text
        }
        if let grace = map["stop_grace_ms"] {
            spec.stopGraceMillis = try integer(grace, at: path + ".stop_grace_ms", in: 0 ... 600_000)
        }
        if let probe = map["probe"] { spec.probe = try probeSpec(probe, at: path + ".probe") }
        if let duty = map["duty"] {
            guard let name = duty as? String, isName(name) else {
                throw ServiceSpecError(key: path + ".duty", value: shown(duty), allowed: "a duty of fleet.duties")
            }
            spec.duty = name
        }
        return spec
    }

    static func probeSpec(_ item: Any, at path: String) throws(ServiceSpecError) -> ProbeSpec {
        let map = try mapping(item, at: path, keys: probeKeys)
        let kinds = ["http", "tcp", "command"].filter { map[$0] != nil }
        guard kinds.count == 1 else {
            throw ServiceSpecError(key: path, value: "(\(kinds.joined(separator: ", ")))", allowed: "exactly one of http (a URL), tcp (HOST:PORT) or command (a list)")
        }
        var probe: ProbeSpec
        switch kinds[0] {
        case "http":
            guard let url = map["http"] as? String, url.hasPrefix("http://") || url.hasPrefix("https://"), url.utf8.count <= 2048 else {
                throw ServiceSpecError(key: path + ".http", value: shown(map["http"]), allowed: "an http:// or https:// URL")
            }
            probe = ProbeSpec(kind: .http(url))
        case "tcp":
            guard let text = map["tcp"] as? String, let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                  (1 ... 65_535).contains(port), colon != text.startIndex else {
                throw ServiceSpecError(key: path + ".tcp", value: shown(map["tcp"]), allowed: "HOST:PORT")
            }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            probe = ProbeSpec(kind: .tcp(host: host, port: port))
        default:
            probe = ProbeSpec(kind: .command(try arguments(map["command"] as Any, at: path + ".command")))
        }
        if let value = map["interval_ms"] { probe.intervalMillis = try integer(value, at: path + ".interval_ms", in: 100 ... 3_600_000) }
        if let value = map["timeout_ms"] { probe.timeoutMillis = try integer(value, at: path + ".timeout_ms", in: 10 ... 600_000) }
        if let value = map["failures"] { probe.failures = try integer(value, at: path + ".failures", in: 1 ... 100) }
        if let value = map["grace_ms"] { probe.graceMillis = try integer(value, at: path + ".grace_ms", in: 0 ... 3_600_000) }
        return probe
    }

    // MARK: Values

    static func mapping(_ item: Any, at path: String, keys: Set<String>) throws(ServiceSpecError) -> [String: Any] {
        guard let map = item as? [String: Any] else { throw ServiceSpecError(key: path, value: shown(item), allowed: "a mapping") }
        for key in map.keys.sorted() where !keys.contains(key) {
            throw ServiceSpecError(key: path + "." + key, value: shown(map[key]), allowed: "unknown key; the keys are \(keys.sorted().joined(separator: ", "))")
        }
        for key in map.keys.sorted() where isNull(map[key]) {
            throw ServiceSpecError(key: path + "." + key, value: "null", allowed: "leave the key out to keep its default")
        }
        return map
    }

    static func arguments(_ value: Any, at path: String) throws(ServiceSpecError) -> [String] {
        guard let list = value as? [Any], !list.isEmpty, list.count <= 256 else {
            throw ServiceSpecError(key: path, value: shown(value), allowed: "a list of 1 ... 256 texts: the program, then its arguments")
        }
        var texts: [String] = []
        for (index, item) in list.enumerated() {
            guard let text = scalarText(item), !text.utf8.contains(0), text.utf8.count <= 4096, index > 0 || !text.isEmpty else {
                throw ServiceSpecError(key: "\(path)[\(index)]", value: shown(item), allowed: "a text (no NUL byte, at most 4096 bytes)")
            }
            texts.append(text)
        }
        return texts
    }

    static func integer(_ value: Any, at path: String, in range: ClosedRange<Int>) throws(ServiceSpecError) -> Int {
        guard !(value is Bool), let number = value as? Int, range.contains(number) else {
            throw ServiceSpecError(key: path, value: shown(value), allowed: "a whole number, \(range.lowerBound) ... \(range.upperBound)")
        }
        return number
    }

    /// A scalar written as text (YAML reads `8080` as a number, `yes` as a Boolean).
    static func scalarText(_ value: Any) -> String? {
        if value is Bool { return nil }
        if let text = value as? String { return text }
        if let number = value as? Int { return String(number) }
        return nil
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64
            && text.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D }
    }

    /// systemd's unit name characters: ASCII letters, digits, `:-_.\@`; at most 255 bytes.
    static func isUnit(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 255 && !text.hasPrefix("-") && text.contains(".")
            && text.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0" ... "9").contains($0))) || ":-_.\\@".unicodeScalars.contains($0) }
    }

    static func isVariable(_ text: String) -> Bool {
        guard let first = text.utf8.first, !(0x30 ... 0x39).contains(first), text.utf8.count <= 128 else { return false }
        return text.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    static func isNull(_ value: Any?) -> Bool {
        guard let value else { return true }
        return value is NSNull
    }

    static func shown(_ value: Any?) -> String {
        guard let value else { return "(missing)" }
        if let text = value as? String { return quoted(text) }
        if value is [Any] { return "(a list)" }
        if value is [String: Any] { return "(a mapping)" }
        return String(describing: value)
    }

    static func quoted(_ text: String) -> String { "\"\(text.prefix(200))\"" }
}
