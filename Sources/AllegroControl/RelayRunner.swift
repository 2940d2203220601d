import AllegroLog
import AllegroPosix
import AllegroRelay
import AllegroStore
import Foundation
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Runs a `RelayServer` on a thread of its own (the event loop blocks in epoll; it never runs
/// on Swift concurrency's threads) and lets async code wait for it and stop it.
public final class RelayRunner: Sendable {
    public let address: String
    public let store: StateStore
    private let stopper: RelayServer.Stopper
    private let outcome = Mutex<Outcome>(Outcome())

    private struct Outcome {
        var result: Result<Void, any Error>?
        var waiter: CheckedContinuation<Void, any Error>?
    }

    private init(address: String, store: StateStore, stopper: RelayServer.Stopper) {
        self.address = address
        self.store = store
        self.stopper = stopper
    }

    /// Creates the relay on its thread (recovery, spill thread, listening socket) and returns
    /// once it listens, or throws why it cannot.
    public static func start(_ configuration: RelayConfiguration, log: EventLog, monitor: RelayMonitor,
                             metrics: RelayMetrics) async throws -> RelayRunner {
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<RelayRunner, any Error>) in
            let thread = Thread {
                let server: RelayServer
                do {
                    server = try RelayServer(configuration: configuration, log: log, monitor: monitor, metrics: metrics)
                } catch {
                    started.resume(throwing: error)
                    return
                }
                let runner = RelayRunner(address: server.address.description, store: server.store, stopper: server.stopper)
                started.resume(returning: runner)
                do {
                    try server.run()
                    runner.finish(.success(()))
                } catch {
                    runner.finish(.failure(error))
                }
            }
            thread.name = "allegro-relay"
            thread.start()
        }
    }

    /// Returns when the event loop has stopped (and the spill is flushed); throws its error.
    public func waitUntilStopped() async throws {
        try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
            let done = outcome.withLock { outcome -> Result<Void, any Error>? in
                if outcome.result == nil { outcome.waiter = waiter }
                return outcome.result
            }
            if let done { waiter.resume(with: done) }
        }
    }

    public func shutDownGracefully() { stopper.shutDownGracefully() }

    private func finish(_ result: Result<Void, any Error>) {
        let waiter = outcome.withLock { outcome in
            outcome.result = result
            defer { outcome.waiter = nil }
            return outcome.waiter
        }
        waiter?.resume(with: result)
    }
}

/// The relay as a swift-service-lifecycle service: graceful shutdown (the first SIGTERM or
/// SIGINT) drains it; a second signal ends the process at once, as a crash would, which the
/// spill and state database are built to survive.
struct RelayService: Service {
    let runner: RelayRunner
    let log: EventLog

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await runner.waitUntilStopped()
            } onCancel: {
                runner.shutDownGracefully()
            }
        } onGracefulShutdown: {
            log.log(.info, "shutdown_requested", ["next_signal": "exits at once"])
            runner.shutDownGracefully()
            Self.exitOnNextSignal(log)
        }
    }

    private static func exitOnNextSignal(_ log: EventLog) {
        Task.detached {
            for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                log.log(.warning, "exit_now", ["signal": signal.description,
                                               "effect": "records not yet acknowledged will be resent by their producers"])
                ProcessSetup.exitImmediately(128 + signal.rawValue)
            }
        }
    }
}
