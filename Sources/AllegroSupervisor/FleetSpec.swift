import Foundation

/// The fleet this host belongs to, for failover: its own name, its peers (each checked at its
/// supervisor's `/v1/duties`), and for each duty the ordered hosts that may hold it (the seed's
/// "Allegro primary, Ezra secondary, Bezalel tertiary"). The file's top-level `fleet` mapping.
public struct FleetSpec: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        public var name: String
        /// The peer's supervisor port, `http://HOST:PORT`.
        public var url: String
    }

    public var host: String
    public var peers: [Peer]
    public var duties: [String: [String]]
    public var checkMillis = 1_000
    /// Failed checks in a row that make a peer down.
    public var failures = 3
    /// How long a host before this one in a duty's list must answer before the duty goes back.
    public var givebackMillis = 10_000

    /// A limit on everything: a fleet is a few hosts.
    public static let maxHosts = 16
    public static let maxDuties = 32
}

/// Reads the `fleet` mapping strictly, naming the key path of any mistake.
public enum FleetSpecParser {
    static let keys: Set<String> = ["host", "peers", "duties", "check_ms", "failures", "giveback_ms"]

    public static func parse(_ value: Any) throws(ServiceSpecError) -> FleetSpec {
        let map = try ServiceSpecParser.mapping(value, at: "fleet", keys: keys)
        guard let host = map["host"] as? String, ServiceSpecParser.isName(host) else {
            throw ServiceSpecError(key: "fleet.host", value: ServiceSpecParser.shown(map["host"]), allowed: "this host's name: 1 ... 64 of a-z, 0-9, _ and -")
        }
        guard let list = map["peers"] as? [Any], list.count < FleetSpec.maxHosts else {
            throw ServiceSpecError(key: "fleet.peers", value: ServiceSpecParser.shown(map["peers"]),
                                   allowed: "a list of the other hosts (at most \(FleetSpec.maxHosts - 1)), each {name, url}")
        }
        var peers: [FleetSpec.Peer] = []
        for (index, item) in list.enumerated() {
            let path = "fleet.peers[\(index)]"
            let peer = try ServiceSpecParser.mapping(item, at: path, keys: ["name", "url"])
            guard let name = peer["name"] as? String, ServiceSpecParser.isName(name), name != host, !peers.contains(where: { $0.name == name }) else {
                throw ServiceSpecError(key: path + ".name", value: ServiceSpecParser.shown(peer["name"]), allowed: "a host name, once, not this host's")
            }
            guard let url = peer["url"] as? String, url.hasPrefix("http://") || url.hasPrefix("https://"), URL(string: url)?.host != nil,
                  url.utf8.count <= 2048 else {
                throw ServiceSpecError(key: path + ".url", value: ServiceSpecParser.shown(peer["url"]), allowed: "the peer supervisor's http://HOST:PORT")
            }
            peers.append(.init(name: name, url: url.hasSuffix("/") ? String(url.dropLast()) : url))
        }
        guard let duties = map["duties"] as? [String: Any], !duties.isEmpty, duties.count <= FleetSpec.maxDuties else {
            throw ServiceSpecError(key: "fleet.duties", value: ServiceSpecParser.shown(map["duties"]),
                                   allowed: "a mapping of duty names to their ordered lists of hosts (1 ... \(FleetSpec.maxDuties) duties)")
        }
        let names = Set([host] + peers.map(\.name))
        var orders: [String: [String]] = [:]
        for (duty, order) in duties.sorted(by: { $0.key < $1.key }) {
            guard ServiceSpecParser.isName(duty) else {
                throw ServiceSpecError(key: "fleet.duties." + duty, value: "(a duty)", allowed: "a duty name: a-z, 0-9, _ and -")
            }
            let allowed = "an ordered list of hosts, each once, each this host or a peer (\(names.sorted().joined(separator: ", ")))"
            guard let hosts = order as? [Any], !hosts.isEmpty, Set(hosts.compactMap { $0 as? String }).count == hosts.count else {
                throw ServiceSpecError(key: "fleet.duties." + duty, value: ServiceSpecParser.shown(order), allowed: allowed)
            }
            if let stranger = hosts.first(where: { ($0 as? String).map(names.contains) != true }) {
                throw ServiceSpecError(key: "fleet.duties." + duty, value: ServiceSpecParser.shown(stranger), allowed: "not a host of the fleet: " + allowed)
            }
            orders[duty] = hosts.compactMap { $0 as? String }
        }
        var fleet = FleetSpec(host: host, peers: peers, duties: orders)
        if let value = map["check_ms"] { fleet.checkMillis = try ServiceSpecParser.integer(value, at: "fleet.check_ms", in: 100 ... 60_000) }
        if let value = map["failures"] { fleet.failures = try ServiceSpecParser.integer(value, at: "fleet.failures", in: 1 ... 100) }
        if let value = map["giveback_ms"] {
            fleet.givebackMillis = try ServiceSpecParser.integer(value, at: "fleet.giveback_ms", in: 0 ... 86_400_000)
        }
        return fleet
    }
}
