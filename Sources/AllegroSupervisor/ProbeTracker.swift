/// Turns a service's probe results into its health: `failures` failed probes in a row make it
/// unhealthy (once per streak); the first success after that makes it healthy again. Failures
/// within the probe's grace after a start do not count. Pure: times are arguments.
public struct ProbeTracker: Sendable, Equatable {
    public let spec: ProbeSpec
    /// Failed probes in a row (counted ones).
    public private(set) var streak = 0
    public private(set) var unhealthy = false
    /// Since the last start, a probe has passed.
    public private(set) var passed = false
    public private(set) var lastReason = ""

    public init(spec: ProbeSpec) { self.spec = spec }

    public enum Change: Sendable, Equatable {
        case none
        /// The streak reached the threshold: restart the service.
        case becameUnhealthy(reason: String)
        case recovered
    }

    /// A new start: the grace begins again, the streak is forgotten.
    public mutating func started() {
        streak = 0
        passed = false
        unhealthy = false
    }

    /// One probe's result at `now`, for a run started at `startedAt` (milliseconds).
    public mutating func record(ok: Bool, reason: String, atMillis now: Int64, startedAtMillis startedAt: Int64) -> Change {
        if ok {
            streak = 0
            passed = true
            lastReason = ""
            guard unhealthy else { return .none }
            unhealthy = false
            return .recovered
        }
        lastReason = reason
        // Before the first pass, a failure within the grace is the service still starting.
        if !passed && now - startedAt < Int64(spec.graceMillis) { return .none }
        streak += 1
        guard streak >= spec.failures, !unhealthy else { return .none }
        unhealthy = true
        return .becameUnhealthy(reason: reason)
    }
}
