@testable import AllegroSupervisor
import Testing

/// The restart schedule with an injected clock: doubling with jitter to a cap, reset after a
/// healthy period, an alert past the intensity limit, and never giving up.
@Suite struct RestartScheduleTests {
    var policy: RestartPolicy {
        var policy = RestartPolicy()
        policy.firstDelayMillis = 100
        policy.maxDelayMillis = 300_000
        policy.jitterPercent = 20
        policy.healthyMillis = 60_000
        policy.intensityRestarts = 10
        policy.intensityWindowMillis = 600_000
        return policy
    }

    @Test func delaysDoubleFromTheFirstToTheCapWithinTheirJitter() {
        var schedule = RestartSchedule(policy: policy)
        var now: Int64 = 0
        var delays: [Int] = []
        for _ in 0 ..< 10 {
            let decision = schedule.stopped(atMillis: now, random: 0.5)      // 0.5: no jitter
            delays.append(decision.delayMillis)
            now += Int64(decision.delayMillis) + 50
        }
        #expect(delays == [100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200])
        // The jitter's bounds: ±20 % of the doubled delay.
        #expect(RestartSchedule.delay(policy, streak: 3, random: 0) == 640)
        #expect(RestartSchedule.delay(policy, streak: 3, random: 1) == 960)
        // The cap holds whatever the streak and the random number.
        #expect(RestartSchedule.delay(policy, streak: 12, random: 1) == 300_000)
        #expect(RestartSchedule.delay(policy, streak: 10_000, random: 0.99) == 300_000)
    }

    @Test func pastTheIntensityLimitItAlertsOnceAndKeepsRetryingAtTheCapForEver() {
        var schedule = RestartSchedule(policy: policy)
        var now: Int64 = 0
        var began: [Int] = []
        var delays: [Int] = []
        for index in 0 ..< 40 {
            let decision = schedule.stopped(atMillis: now, random: 0.5)
            if decision.crashLoopBegan { began.append(index) }
            delays.append(decision.delayMillis)
            now += Int64(decision.delayMillis)
        }
        #expect(began == [10], "the eleventh restart within ten minutes is past the limit of ten; said once")
        #expect(schedule.crashLooping)
        #expect(delays[10...].allSatisfy { $0 == 300_000 }, "never given up: restarts go on at the cap")
        #expect(delays.count == 40)
    }

    @Test func aHealthyPeriodResetsTheStreakAndEndsTheCrashLoop() {
        var schedule = RestartSchedule(policy: policy)
        var now: Int64 = 0
        for _ in 0 ..< 11 { now += Int64(schedule.stopped(atMillis: now, random: 0.5).delayMillis) }
        #expect(schedule.crashLooping)
        let ended = schedule.healthy()
        #expect(ended, "the end of a crash loop is told")
        #expect(!schedule.crashLooping && schedule.streak == 0)
        let again = schedule.healthy()
        #expect(!again, "told once")
        now += 3_600_000
        #expect(schedule.stopped(atMillis: now, random: 0.5).delayMillis == 100, "from the first delay again")
    }

    @Test func restartsSpreadOverMoreThanTheWindowAreNotACrashLoop() {
        var tight = policy
        tight.intensityRestarts = 3
        tight.intensityWindowMillis = 10_000
        var schedule = RestartSchedule(policy: tight)
        // A stop every 4 s: never more than three within 10 s.
        for index in 0 ..< 20 {
            let decision = schedule.stopped(atMillis: Int64(index) * 4_000, random: 0.5)
            #expect(!decision.crashLoopBegan)
        }
        #expect(!schedule.crashLooping)
    }

    @Test func theDefaultsAreInRangeAndAKeyOutOfRangeIsNamed() {
        #expect(RestartPolicy().problem() == nil)
        var bad = RestartPolicy()
        bad.maxDelayMillis = 10
        #expect(bad.problem()?.key == "supervisor.max_restart_ms")
        bad = RestartPolicy()
        bad.jitterPercent = 90
        #expect(bad.problem()?.key == "supervisor.jitter_percent")
    }
}

/// A probe's streak of failures, its grace after a start, and its recovery.
@Suite struct ProbeTrackerTests {
    @Test func failuresInARowPastTheThresholdMakeItUnhealthyOnceThenASuccessRecovers() {
        var spec = ProbeSpec(kind: .tcp(host: "127.0.0.1", port: 1))
        spec.failures = 3
        spec.graceMillis = 1_000
        var tracker = ProbeTracker(spec: spec)
        tracker.started()
        #expect(tracker.record(ok: false, reason: "refused", atMillis: 500, startedAtMillis: 0) == .none, "within the grace")
        #expect(tracker.streak == 0)
        #expect(tracker.record(ok: false, reason: "refused", atMillis: 1_500, startedAtMillis: 0) == .none)
        #expect(tracker.record(ok: false, reason: "refused", atMillis: 2_500, startedAtMillis: 0) == .none)
        #expect(tracker.record(ok: false, reason: "refused", atMillis: 3_500, startedAtMillis: 0) == .becameUnhealthy(reason: "refused"))
        #expect(tracker.record(ok: false, reason: "refused", atMillis: 4_500, startedAtMillis: 0) == .none, "said once per streak")
        #expect(tracker.record(ok: true, reason: "", atMillis: 5_500, startedAtMillis: 0) == .recovered)
        #expect(tracker.streak == 0 && !tracker.unhealthy && tracker.passed)
    }

    @Test func onceAProbeHasPassedTheGraceNoLongerHidesFailures() {
        var spec = ProbeSpec(kind: .tcp(host: "127.0.0.1", port: 1))
        spec.failures = 1
        spec.graceMillis = 60_000
        var tracker = ProbeTracker(spec: spec)
        tracker.started()
        #expect(tracker.record(ok: true, reason: "", atMillis: 100, startedAtMillis: 0) == .none)
        #expect(tracker.record(ok: false, reason: "hung", atMillis: 200, startedAtMillis: 0) == .becameUnhealthy(reason: "hung"))
    }
}
