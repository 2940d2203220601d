/// Which duties this host holds, decided from its peers' health like VRRP: no consensus store, a
/// fixed order of hosts per duty, and fencing by epoch where two hosts could act at once.
///
/// The rules (config/README.md, "Failover"), for each duty and its ordered list of hosts:
/// - **take**: every host before this one in the list is down (`failures` failed checks in a row),
///   no reachable peer claims the duty, and every peer has been asked at least once since this
///   host started. The new epoch is unique to this host: (the highest round seen + 1) × 16 + this
///   host's place in the list, so two hosts that take from the same knowledge (a partition, or a
///   holder that died before anyone saw its claim) never share an epoch, and the later round wins.
/// - **give back**: a host before this one has answered every check for `givebackMillis`: this
///   host stops, the other sees nobody holding and takes with a higher epoch (no flapping: one
///   good check is not enough).
/// - **fence**: a reachable peer claims the duty with a higher epoch than this host's claim: this
///   host stops at once. After a partition heals, exactly one claim survives.
///
/// Pure: checks and times come in as arguments, decisions go out as values; tested alone.
public struct DutyElection: Sendable, Equatable {
    public struct Policy: Sendable, Equatable {
        public var failures = 3
        public var givebackMillis = 10_000
        public init() {}
    }

    /// What a peer said of a duty it holds.
    public struct Claim: Sendable, Equatable, Codable {
        public var duty: String
        public var epoch: Int64
        public init(duty: String, epoch: Int64) {
            self.duty = duty
            self.epoch = epoch
        }
    }

    public enum Decision: Sendable, Equatable {
        case take(duty: String, epoch: Int64)
        case giveBack(duty: String, to: String)
        case fenced(duty: String, by: String, epoch: Int64)
    }

    struct Peer: Sendable, Equatable {
        var failures = 0
        var heard = false
        var healthySince: Int64?
        var claims: [Claim] = []
    }

    public let me: String
    public let duties: [String: [String]]
    public let policy: Policy
    private var peers: [String: Peer]
    /// The duties held, with their epochs.
    public private(set) var held: [String: Int64] = [:]
    /// The highest epoch seen of each duty (own ones included), persisted by the caller.
    public private(set) var epochs: [String: Int64]

    public init(me: String, peers: [String], duties: [String: [String]], policy: Policy, epochs: [String: Int64] = [:]) {
        self.me = me
        self.duties = duties
        self.policy = policy
        self.peers = Dictionary(uniqueKeysWithValues: peers.filter { $0 != me }.map { ($0, Peer()) })
        self.epochs = epochs
    }

    /// A check of `peer`: answered (with the duties it claims) or not.
    public mutating func checked(_ peer: String, answered: Bool, claims: [Claim] = [], atMillis now: Int64) {
        guard var state = peers[peer] else { return }
        state.heard = true
        if answered {
            state.failures = 0
            if state.healthySince == nil { state.healthySince = now }
            state.claims = claims
            for claim in claims { epochs[claim.duty] = max(epochs[claim.duty] ?? 0, claim.epoch) }
        } else {
            state.failures += 1
            state.healthySince = nil
            if state.failures >= policy.failures { state.claims = [] }
        }
        peers[peer] = state
    }

    public func isDown(_ peer: String) -> Bool { (peers[peer]?.failures ?? 0) >= policy.failures }

    /// What to do now, duty by duty in name order.
    public mutating func decide(atMillis now: Int64) -> [Decision] {
        var decisions: [Decision] = []
        for (duty, hosts) in duties.sorted(by: { $0.key < $1.key }) {
            guard let rank = hosts.firstIndex(of: me) else { continue }
            let higher = hosts[..<rank]
            if let epoch = held[duty] {
                if let (peer, theirs) = strongerClaim(duty, epoch: epoch, rank: rank, hosts: hosts) {
                    held[duty] = nil
                    decisions.append(.fenced(duty: duty, by: peer, epoch: theirs))
                } else if let back = higher.first(where: { peer in
                    guard let since = peers[peer]?.healthySince else { return false }
                    return now - since >= Int64(policy.givebackMillis)
                }) {
                    held[duty] = nil
                    decisions.append(.giveBack(duty: duty, to: back))
                }
                continue
            }
            let everyoneHeard = peers.values.allSatisfy(\.heard)
            let higherDown = higher.allSatisfy { isDown($0) }
            let claimed = peers.values.contains { $0.claims.contains { $0.duty == duty } }
            guard everyoneHeard, higherDown, !claimed else { continue }
            let epoch = Self.epoch(after: epochs[duty] ?? 0, rank: rank)
            epochs[duty] = epoch
            held[duty] = epoch
            decisions.append(.take(duty: duty, epoch: epoch))
        }
        return decisions
    }

    /// Epochs per round: a host's place in a list is below this (`FleetSpec.maxHosts`).
    static let ranksPerRound: Int64 = 16

    /// The epoch a host of place `rank` takes after `seen`: the next round, plus its place.
    static func epoch(after seen: Int64, rank: Int) -> Int64 {
        (seen / ranksPerRound + 1) * ranksPerRound + Int64(rank)
    }

    /// A reachable peer's claim on `duty` that beats this host's: a higher epoch (epochs of
    /// different hosts never tie; an equal one is this host's own claim, seen back).
    private func strongerClaim(_ duty: String, epoch: Int64, rank: Int, hosts: [String]) -> (String, Int64)? {
        for (name, peer) in peers.sorted(by: { $0.key < $1.key }) where peer.failures < policy.failures {
            guard let claim = peer.claims.first(where: { $0.duty == duty }) else { continue }
            let theirRank = hosts.firstIndex(of: name) ?? Int.max
            if claim.epoch > epoch || (claim.epoch == epoch && theirRank < rank) { return (name, claim.epoch) }
        }
        return nil
    }
}
