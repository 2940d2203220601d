import AllegroClient
import AllegroPosix
import Synchronization

/// Says at once, on standard error, what a command's connection to the relay is doing: the
/// first failed attempt with the reason and how long it keeps trying, a reminder every 5 s while
/// it retries, and the connection once made. Nothing while all goes well.
final class ConnectionReporter: Sendable {
    private let command: String
    private let timeoutFlag: String
    private struct State {
        var failing = false
        var lastReportNanos: UInt64 = 0
    }
    private let state = Mutex(State())

    init(command: String, timeoutFlag: String = "--connect-timeout") {
        self.command = command
        self.timeoutFlag = timeoutFlag
    }

    func report(_ event: ConnectionEvent) {
        let now = Clock.monotonicNanos
        switch event {
        case let .failed(_, error, willRetry, millisLeft):
            let line: String? = state.withLock { state in
                defer { state.failing = true }
                guard willRetry else { return nil }
                if state.failing && now - state.lastReportNanos < 5_000_000_000 { return nil }
                state.lastReportNanos = now
                let seconds = (millisLeft + 999) / 1000
                return state.failing
                    ? "\(command): still retrying (\(seconds) s left): \(error)"
                    : "\(command): \(error); retrying for \(seconds) s (\(timeoutFlag))"
            }
            if let line { StandardStreams.error(line) }
        case let .connected(address):
            let recovered = state.withLock { state in
                defer { state.failing = false }
                return state.failing
            }
            if recovered { StandardStreams.error("\(command): connected to \(address)") }
        }
    }
}

/// "1 record", "2 records".
func counted(_ count: some BinaryInteger, _ noun: String) -> String {
    "\(count) \(noun)\(count == 1 ? "" : "s")"
}
