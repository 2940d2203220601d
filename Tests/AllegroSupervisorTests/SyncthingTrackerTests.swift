@testable import AllegroSupervisor
import Testing

/// The Syncthing watcher's rules, time injected: lag from the first sign a peer is behind to its
/// completion, and alerts only after they lasted `alertMillis`, each resolved once.
@Suite struct SyncthingTrackerTests {
    static let ezra = "EZRA123-AAAAAAA"
    static let bezalel = "BEZALEL-BBBBBBB"

    func tracker() -> SyncthingTracker { SyncthingTracker(alertMillis: 2_000) }

    func peers(ezra: Bool = true, bezalel: Bool = true) -> [SyncthingTracker.Peer] {
        [.init(id: Self.ezra, name: "ezra", connected: ezra), .init(id: Self.bezalel, name: "", connected: bezalel)]
    }

    static let logs = SyncthingTracker.Folder(id: "logs", state: "idle", peers: [ezra, bezalel])

    func completion(_ peer: String, _ percent: Double, needItems: Int64 = 0) -> SyncthingTracker.Completion {
        .init(folder: "logs", peer: peer, percent: percent, needItems: needItems, needBytes: percent < 100 ? 10 : 0)
    }

    @Test func aLocalChangeStartsThePeersLagAndItsCompletionEndsItWithTheTimeBehind() {
        var tracker = tracker()
        #expect(tracker.polled(peers: peers(), folders: [Self.logs], completions: [], atMillis: 0) == [])
        tracker.localChange(folder: "logs", atMillis: 1_000)
        #expect(tracker.lagMillis(folder: "logs", peer: Self.ezra, atMillis: 1_250) == 250)
        #expect(tracker.completed(completion(Self.ezra, 40), atMillis: 1_100) == nil, "still behind; the lag runs from the change")
        let done = tracker.completed(completion(Self.ezra, 100), atMillis: 1_300)
        #expect(done == .init(folder: "logs", peer: Self.ezra, lagMillis: 300))
        #expect(tracker.links["logs"]?[Self.ezra]?.lastCatchUpMillis == 300)
        #expect(tracker.lagMillis(folder: "logs", peer: Self.ezra, atMillis: 1_400) == 0)
        #expect(tracker.lagMillis(folder: "logs", peer: Self.bezalel, atMillis: 1_400) == 400, "bezalel has not caught up yet")
        #expect(tracker.completed(completion(Self.ezra, 100), atMillis: 1_500) == nil, "complete again is no second catch-up")
    }

    @Test func aPeerSeenBehindByAPollWithoutALocalChangeLagsFromThatPoll() {
        var tracker = tracker()
        _ = tracker.polled(peers: peers(), folders: [Self.logs], completions: [completion(Self.bezalel, 99.5, needItems: 1)], atMillis: 5_000)
        let caughtUp = tracker.polled(peers: peers(), folders: [Self.logs], completions: [completion(Self.bezalel, 100)], atMillis: 8_000)
        #expect(caughtUp == [.init(folder: "logs", peer: Self.bezalel, lagMillis: 3_000)])
        #expect(tracker.completed(completion(Self.bezalel, 100, needItems: 2), atMillis: 8_100) == nil, "items still needed are not complete")
        #expect(tracker.lagMillis(folder: "logs", peer: Self.bezalel, atMillis: 8_200) == 100)
    }

    @Test func aDisconnectedPeerIsLostOnlyAfterTheAlertTimeAndFoundOnceWhenItReconnects() {
        var tracker = tracker()
        _ = tracker.polled(peers: peers(), folders: [Self.logs], completions: [], atMillis: 0)
        #expect(tracker.alerts(atMillis: 0) == [])
        _ = tracker.polled(peers: peers(bezalel: false), folders: [Self.logs], completions: [], atMillis: 1_000)
        #expect(tracker.alerts(atMillis: 1_000) == [], "a restart of a peer is not an alert")
        _ = tracker.polled(peers: peers(bezalel: false), folders: [Self.logs], completions: [], atMillis: 3_000)
        let lost = tracker.alerts(atMillis: 3_000)
        #expect(lost.map(\.alert) == ["syncthing_peer_lost"])
        #expect(lost.first?.subject == "BEZALEL", "an unnamed peer is its ID's first 7 characters")
        #expect(lost.first?.firing == true)
        #expect(tracker.alerts(atMillis: 4_000) == [], "fired once")
        _ = tracker.polled(peers: peers(), folders: [Self.logs], completions: [], atMillis: 5_000)
        let found = tracker.alerts(atMillis: 5_000)
        #expect(found.map(\.firing) == [false])
        #expect(found.first?.subject == "BEZALEL")
    }

    @Test func aConnectedPeerBehindPastTheAlertTimeStallsTheFolderUntilItIsComplete() {
        var tracker = tracker()
        _ = tracker.polled(peers: peers(), folders: [Self.logs], completions: [completion(Self.ezra, 50)], atMillis: 0)
        #expect(tracker.alerts(atMillis: 1_999) == [])
        let stalled = tracker.alerts(atMillis: 2_000)
        #expect(stalled.map(\.alert) == ["syncthing_folder_stalled"])
        #expect(stalled.first?.subject == "logs to ezra")
        #expect(stalled.first?.firing == true)
        // It disconnects meanwhile: still stalled (and lost, later), until complete.
        _ = tracker.polled(peers: peers(ezra: false), folders: [Self.logs], completions: [completion(Self.ezra, 50)], atMillis: 3_000)
        #expect(tracker.alerts(atMillis: 3_000).isEmpty)
        _ = tracker.polled(peers: peers(), folders: [Self.logs], completions: [completion(Self.ezra, 100)], atMillis: 4_000)
        let resolved = tracker.alerts(atMillis: 4_000)
        #expect(resolved.map(\.alert) == ["syncthing_folder_stalled"])
        #expect(resolved.first?.firing == false)
    }

    @Test func aDisconnectedPeerBehindIsLostButNotStalled() {
        var tracker = tracker()
        _ = tracker.polled(peers: peers(ezra: false), folders: [Self.logs], completions: [completion(Self.ezra, 10)], atMillis: 0)
        #expect(tracker.alerts(atMillis: 5_000).map(\.alert) == ["syncthing_peer_lost"])
    }

    @Test func anUnansweringAPIIsOneAlertAndPeersAreNotJudgedMeanwhile() {
        var tracker = tracker()
        _ = tracker.polled(peers: peers(), folders: [Self.logs], completions: [], atMillis: 0)
        tracker.unreachable(atMillis: 1_000)
        #expect(tracker.alerts(atMillis: 2_000) == [])
        tracker.unreachable(atMillis: 3_000)
        let down = tracker.alerts(atMillis: 3_000)
        #expect(down == [.init(alert: "syncthing_unreachable", subject: "syncthing", firing: true, summary: down.first?.summary ?? "")])
        #expect(!tracker.up)
        _ = tracker.polled(peers: peers(), folders: [Self.logs], completions: [], atMillis: 4_000)
        #expect(tracker.alerts(atMillis: 4_000).map(\.firing) == [false])
    }

    @Test func aFolderInErrorStallsAndAFolderNoLongerSharedResolvesItsAlerts() {
        var tracker = tracker()
        var broken = Self.logs
        broken.state = "error"
        _ = tracker.polled(peers: peers(), folders: [broken], completions: [completion(Self.ezra, 0)], atMillis: 0)
        let firing = tracker.alerts(atMillis: 2_000)
        #expect(Set(firing.map(\.subject)) == ["logs", "logs to ezra"])
        #expect(firing.allSatisfy { $0.firing })
        _ = tracker.polled(peers: peers(), folders: [], completions: [], atMillis: 3_000)
        let resolved = tracker.alerts(atMillis: 3_000)
        #expect(Set(resolved.map(\.subject)) == ["logs", "logs to ezra"])
        #expect(resolved.allSatisfy { !$0.firing })
        #expect(tracker.completed(completion(Self.ezra, 100), atMillis: 3_100) == nil, "a folder not shared is not tracked")
    }
}
