#if DEBUG
import Glibc
import Synchronization

/// Debug builds only: make chosen system calls fail with a chosen errno, or take longer,
/// in-process, so tests can drive the spill and the relay through disk and socket failures that
/// a real machine rarely produces on demand (EIO from fdatasync, ENOSPC in the middle of a
/// block, a failed rename, an fdatasync that takes a second). Faults are process-wide: a test
/// scopes its rules with `pathContaining` (its own temporary directory), and calls without a
/// path (recv, send, poll) are only faulted by rules without one.
public enum SystemFaults {
    /// One rule: the matching calls after the first `skip` fail with `errno`, `times` times; or,
    /// with `errno` 0, are made for real after `delayNanos`.
    public struct Rule: Sendable {
        public var call: SystemCallName
        public var errno: Int32
        public var delayNanos: UInt64 = 0
        public var pathContaining: String?
        public var skip: Int
        public var times: Int

        func matches(_ name: SystemCallName, path: String?) -> Bool {
            guard name == call else { return false }
            guard let pathContaining else { return true }
            return path?.contains(pathContaining) ?? false
        }
    }

    /// A handle to remove the rule it made.
    public struct Token: Sendable, Hashable {
        let id: Int
    }

    private struct Rules: ~Copyable {
        var next = 0
        var active: [Int: Rule] = [:]
        /// How often each rule fired.
        var fired: [Int: Int] = [:]
    }

    private static let armed = Atomic<Int>(0)
    private static let rules = Mutex(Rules())

    /// Adds a rule; the calls it matches fail until it has fired `times` times or is removed.
    @discardableResult
    public static func inject(_ call: SystemCallName, errno: Int32, pathContaining: String? = nil,
                              skip: Int = 0, times: Int = 1) -> Token {
        add(Rule(call: call, errno: errno, pathContaining: pathContaining, skip: max(skip, 0), times: max(times, 0)))
    }

    /// Adds a rule that delays the calls it matches by `delayNanos` (then makes them for real),
    /// until it has fired `times` times or is removed. `fired` counts a call as its delay
    /// begins, so a test can act while the call is held.
    @discardableResult
    public static func inject(_ call: SystemCallName, delayNanos: UInt64, pathContaining: String? = nil,
                              skip: Int = 0, times: Int = 1) -> Token {
        add(Rule(call: call, errno: 0, delayNanos: delayNanos, pathContaining: pathContaining, skip: max(skip, 0),
                 times: max(times, 0)))
    }

    /// Arms `rule`, whole, under one lock.
    private static func add(_ rule: Rule) -> Token {
        let id = rules.withLock { state in
            let id = state.next
            state.next += 1
            state.active[id] = rule
            state.fired[id] = 0
            return id
        }
        armed.add(1, ordering: .releasing)
        return Token(id: id)
    }

    /// Removes a rule (it may already be spent).
    public static func remove(_ token: Token) {
        let removed = rules.withLock { state in state.active.removeValue(forKey: token.id) != nil }
        if removed { armed.subtract(1, ordering: .releasing) }
    }

    /// How many calls the rule has failed so far.
    public static func fired(_ token: Token) -> Int {
        rules.withLock { state in state.fired[token.id] ?? 0 }
    }

    /// The errno to fail this call with, or nil to make it for real (after a delay rule's sleep,
    /// taken outside the lock).
    static func injected(_ name: SystemCallName, path: String?) -> Int32? {
        guard armed.load(ordering: .acquiring) > 0 else { return nil }
        let outcome = rules.withLock { state -> Rule? in
            for id in state.active.keys.sorted() {
                guard let rule = state.active[id], rule.matches(name, path: path) else { continue }
                var updated = rule
                if updated.skip > 0 {
                    updated.skip -= 1
                    state.active[id] = updated
                    continue
                }
                guard updated.times > 0 else { continue }
                updated.times -= 1
                state.active[id] = updated
                state.fired[id, default: 0] += 1
                return rule
            }
            return nil
        }
        guard let outcome else { return nil }
        guard outcome.errno == 0 else { return outcome.errno }
        var wait = timespec(tv_sec: Int(outcome.delayNanos / 1_000_000_000), tv_nsec: Int(outcome.delayNanos % 1_000_000_000))
        var left = timespec()
        while nanosleep(&wait, &left) == -1 && Glibc.errno == EINTR { wait = left }
        return nil
    }
}
#endif
