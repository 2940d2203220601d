/// When to restart a service that stopped, and when to say it is crash-looping; never when to
/// give up, because it never does (systemd's StartLimitBurst, supervisord's FATAL and OTP's
/// restart intensity all end with a service down for good and a person to wake).
///
/// The schedule (config/README.md, "The supervisor"): the first restart after
/// `firstDelayMillis`; each further one in a row after twice the last, with ±`jitterPercent`,
/// never more than `maxDelayMillis`. A service that has run `healthyMillis` since its start,
/// passing its probe, is healthy again (the caller says so: `healthy()`): the next stop starts
/// from the first delay. More than `intensityRestarts` restarts within `intensityWindowMillis`
/// is crash-looping: the caller raises an alert, and restarts go on at `maxDelayMillis` until the
/// service is healthy again (then the alert resolves).
///
/// Pure: times come in as arguments (milliseconds on a monotonic clock) and the jitter's random
/// number too, so it is tested alone with an injected clock.
public struct RestartSchedule: Sendable, Equatable {
    public var policy: RestartPolicy
    /// Restarts in a row since the service was last healthy.
    public private(set) var streak = 0
    /// When the restarts inside the intensity window happened (at most intensityRestarts + 1).
    private var recent: [Int64] = []
    public private(set) var crashLooping = false

    public init(policy: RestartPolicy) { self.policy = policy }

    /// What to do about a stop.
    public struct Decision: Sendable, Equatable {
        /// Wait this long, then start the service again.
        public var delayMillis: Int
        /// The service just began crash-looping: raise the alert (once per episode).
        public var crashLoopBegan: Bool
    }

    /// The service stopped (or was stopped) at `now`. `random` is in 0 ..< 1.
    public mutating func stopped(atMillis now: Int64, random: Double) -> Decision {
        recent.append(now)
        recent.removeAll { now - $0 > Int64(policy.intensityWindowMillis) }
        if recent.count > policy.intensityRestarts + 1 { recent.removeFirst(recent.count - policy.intensityRestarts - 1) }
        let began = !crashLooping && recent.count > policy.intensityRestarts
        if began { crashLooping = true }
        let delay = crashLooping ? policy.maxDelayMillis : Self.delay(policy, streak: streak, random: random)
        streak += 1
        return Decision(delayMillis: delay, crashLoopBegan: began)
    }

    /// The service has run healthy for `healthyMillis`: forget the streak. Returns true when
    /// this ends a crash loop (resolve its alert).
    @discardableResult
    public mutating func healthy() -> Bool {
        let ended = crashLooping
        streak = 0
        recent.removeAll()
        crashLooping = false
        return ended
    }

    /// The `streak`-th delay in a row (0: the first): doubling from the first delay, jittered,
    /// capped.
    static func delay(_ policy: RestartPolicy, streak: Int, random: Double) -> Int {
        let doubled = Double(policy.firstDelayMillis) * Double(1 << min(streak, 40))
        let jitter = 1 + Double(policy.jitterPercent) / 100 * (2 * min(max(random, 0), 1) - 1)
        return Int(min(doubled * jitter, Double(policy.maxDelayMillis)).rounded())
    }
}

/// The numbers of a `RestartSchedule`; the defaults are the supervisor's (config/README.md).
public struct RestartPolicy: Sendable, Equatable {
    /// About a second from a crash to a serving relay: this, plus the relay's start.
    public var firstDelayMillis = 100
    public var maxDelayMillis = 300_000
    public var jitterPercent = 20
    public var healthyMillis = 60_000
    public var intensityRestarts = 10
    public var intensityWindowMillis = 600_000

    public init() {}

    /// Which key is out of range, if any: (key, allowed).
    public func problem() -> (key: String, allowed: String)? {
        if !(1 ... 3_600_000).contains(firstDelayMillis) { return ("supervisor.first_restart_ms", "1 ... 3600000") }
        if !(firstDelayMillis ... 86_400_000).contains(maxDelayMillis) {
            return ("supervisor.max_restart_ms", "supervisor.first_restart_ms (\(firstDelayMillis)) ... 86400000")
        }
        if !(0 ... 50).contains(jitterPercent) { return ("supervisor.jitter_percent", "0 ... 50") }
        if !(1_000 ... 86_400_000).contains(healthyMillis) { return ("supervisor.healthy_ms", "1000 ... 86400000") }
        if !(1 ... 1_000).contains(intensityRestarts) { return ("supervisor.intensity_restarts", "1 ... 1000") }
        if !(1_000 ... 86_400_000).contains(intensityWindowMillis) { return ("supervisor.intensity_window_ms", "1000 ... 86400000") }
        return nil
    }
}
