import ServiceLifecycle
import Synchronization

/// What the webhook asks of the poller between its polls: repositories to read at once (a
/// delivery it could not take from its payload), and triage steps to finish (a new issue it
/// did take). The poller sleeps on `wait(upTo:)` and wakes at once when asked: no tick. Safe
/// from any thread; bounded by the configured repositories and one waiter, the poller.
final class PollTrigger: Sendable {
    private struct State {
        var repos = Set<String>()
        var resume = false
        /// Asked while nobody waited: the next wait returns at once.
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// Read `repo` now.
    func request(_ repo: String) { ring { _ = $0.repos.insert(repo) } }

    /// Finish the pending commands (triage steps journaled by the webhook) now.
    func requestResume() { ring { $0.resume = true } }

    /// What was asked since the last call.
    func take() -> (repos: Set<String>, resume: Bool) {
        state.withLock { state in
            defer { state.repos.removeAll(); state.resume = false }
            return (state.repos, state.resume)
        }
    }

    /// Returns when something is asked (or was asked since the last wait), after `timeout`, or
    /// at a graceful shutdown. One caller at a time (the poller).
    func wait(upTo timeout: Duration) async {
        let timer = Task {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: timeout) }
            // Cancelled: the wait ended otherwise, and a ring now would only wake the next one.
            if !Task.isCancelled { ring { _ in } }
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                assert(state.waiter == nil, "one waiter at a time")
                if state.rung { return true }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        state.withLock { $0.rung = false }
    }

    private func ring(_ change: (inout State) -> Void) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            change(&state)
            state.rung = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
