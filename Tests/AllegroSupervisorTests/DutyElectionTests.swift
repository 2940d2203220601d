@testable import AllegroSupervisor
import Testing

/// Failover's decisions, checks and clock injected: the order of hosts, the give-back without
/// flapping, and the fence that leaves one holder after a partition.
@Suite struct DutyElectionTests {
    static let duties = ["gitea": ["allegro", "ezra", "bezalel"], "hermes": ["ezra", "bezalel"]]

    func election(_ me: String) -> DutyElection {
        var policy = DutyElection.Policy()
        policy.failures = 3
        policy.givebackMillis = 10_000
        return DutyElection(me: me, peers: ["allegro", "ezra", "bezalel"], duties: Self.duties, policy: policy)
    }

    @Test func theFirstHostTakesItsDutiesOnceItHasHeardEveryPeer() {
        var allegro = election("allegro")
        #expect(allegro.decide(atMillis: 0) == [], "no peer heard yet: epochs unknown")
        allegro.checked("ezra", answered: true, atMillis: 1_000)
        #expect(allegro.decide(atMillis: 1_000) == [])
        allegro.checked("bezalel", answered: false, atMillis: 1_000)
        #expect(allegro.decide(atMillis: 1_000) == [.take(duty: "gitea", epoch: 16)], "round 1, place 0; not hermes: allegro is not in its list")
        #expect(allegro.held == ["gitea": 16])
        #expect(allegro.decide(atMillis: 2_000) == [], "taken once")
    }

    @Test func theNextHostTakesOverAfterTheThresholdOfFailedChecksAndGivesBackWithoutFlapping() {
        var ezra = election("ezra")
        ezra.checked("allegro", answered: true, claims: [.init(duty: "gitea", epoch: 64)], atMillis: 0)
        ezra.checked("bezalel", answered: true, atMillis: 0)
        #expect(ezra.decide(atMillis: 0) == [.take(duty: "hermes", epoch: 16)])
        for second in 1 ... 2 {
            ezra.checked("allegro", answered: false, atMillis: Int64(second) * 1000)
            #expect(ezra.decide(atMillis: Int64(second) * 1000) == [], "two failures are not three")
        }
        ezra.checked("allegro", answered: false, atMillis: 3_000)
        #expect(ezra.decide(atMillis: 3_000) == [.take(duty: "gitea", epoch: 81)], "the round after allegro's, at ezra's place")
        // Allegro is back, holding nothing: one good check is not enough to give it back.
        ezra.checked("allegro", answered: true, atMillis: 4_000)
        #expect(ezra.decide(atMillis: 4_000) == [])
        ezra.checked("allegro", answered: false, atMillis: 5_000)   // a flap: the healthy period starts again
        ezra.checked("allegro", answered: true, atMillis: 6_000)
        #expect(ezra.decide(atMillis: 15_000) == [])
        #expect(ezra.decide(atMillis: 16_000) == [.giveBack(duty: "gitea", to: "allegro")])
        #expect(ezra.held == ["hermes": 16])
    }

    @Test func aHostDoesNotTakeADutyAReachablePeerHolds() {
        var bezalel = election("bezalel")
        bezalel.checked("allegro", answered: false, atMillis: 0)
        bezalel.checked("ezra", answered: true, claims: [.init(duty: "gitea", epoch: 33)], atMillis: 0)
        for second in 1 ... 5 { bezalel.checked("allegro", answered: false, atMillis: Int64(second) * 1000) }
        #expect(bezalel.decide(atMillis: 5_000) == [], "ezra is up: gitea is ezra's, hermes too")
        // Ezra goes silent too: bezalel takes both, with epochs past what it saw.
        for second in 6 ... 8 { bezalel.checked("ezra", answered: false, atMillis: Int64(second) * 1000) }
        #expect(bezalel.decide(atMillis: 8_000) == [.take(duty: "gitea", epoch: 50), .take(duty: "hermes", epoch: 17)])
    }

    @Test func afterAPartitionTheStrongerClaimStandsAndTheOtherStopsAtOnce() {
        // Both sides took gitea during the partition, from the same epoch.
        var allegro = election("allegro")
        var ezra = election("ezra")
        allegro.checked("ezra", answered: false, atMillis: 0)
        allegro.checked("bezalel", answered: false, atMillis: 0)
        #expect(allegro.decide(atMillis: 0) == [.take(duty: "gitea", epoch: 16)])
        for second in 0 ... 2 {
            ezra.checked("allegro", answered: false, atMillis: Int64(second) * 1000)
            ezra.checked("bezalel", answered: false, atMillis: Int64(second) * 1000)
        }
        #expect(ezra.decide(atMillis: 2_000) == [.take(duty: "gitea", epoch: 17), .take(duty: "hermes", epoch: 16)], "never the same epoch as allegro's")
        // Healed: each hears the other's claim; the higher epoch stands, the other stops at once.
        ezra.checked("allegro", answered: true, claims: [.init(duty: "gitea", epoch: 16)], atMillis: 3_000)
        allegro.checked("ezra", answered: true, claims: [.init(duty: "gitea", epoch: 17), .init(duty: "hermes", epoch: 16)], atMillis: 3_000)
        #expect(allegro.decide(atMillis: 3_000) == [.fenced(duty: "gitea", by: "ezra", epoch: 17)])
        #expect(ezra.decide(atMillis: 3_000) == [])
        // A higher epoch wins whatever the order.
        var late = election("allegro")
        late.checked("ezra", answered: false, atMillis: 0)
        late.checked("bezalel", answered: false, atMillis: 0)
        _ = late.decide(atMillis: 0)
        late.checked("ezra", answered: true, claims: [.init(duty: "gitea", epoch: 145)], atMillis: 1_000)
        #expect(late.decide(atMillis: 1_000) == [.fenced(duty: "gitea", by: "ezra", epoch: 145)])
        #expect(late.epochs["gitea"] == 145, "the next take goes past it")
        #expect(DutyElection.epoch(after: 145, rank: 0) == 160)
    }

    @Test func aHostNotInADutysListNeverTakesIt() {
        var allegro = election("allegro")
        for second in 0 ... 10 {
            allegro.checked("ezra", answered: false, atMillis: Int64(second) * 1000)
            allegro.checked("bezalel", answered: false, atMillis: Int64(second) * 1000)
        }
        #expect(allegro.decide(atMillis: 10_000) == [.take(duty: "gitea", epoch: 16)])
        #expect(allegro.held["hermes"] == nil)
    }
}
