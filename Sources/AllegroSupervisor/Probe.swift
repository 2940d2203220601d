import AllegroLog
import AllegroPosix
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// Runs one probe of a `ProbeSpec`, within its timeout: an HTTP GET that must answer 2xx, a TCP
/// connection that must be accepted, or a program that must exit 0 (killed with its group at
/// the timeout). The answer is whether it passed, how long it took and, if not, why.
struct Probe: Sendable {
    let spec: ProbeSpec
    let http: HTTPClient

    struct Result: Sendable, Equatable {
        var ok: Bool
        var seconds: Double
        var reason: String
    }

    func run() async -> Result {
        let started = Clock.monotonicNanos
        let (ok, reason) = await attempt()
        return Result(ok: ok, seconds: Double(Clock.monotonicNanos - started) / 1e9, reason: reason)
    }

    private func attempt() async -> (Bool, String) {
        let timeout = TimeAmount.milliseconds(Int64(spec.timeoutMillis))
        switch spec.kind {
        case let .http(url):
            // The whole exchange within the timeout: the client's own deadline ends at the head,
            // and a server that sends a head then stalls must fail the probe, not hang it.
            let http = http
            let limit = spec.timeoutMillis
            return await withTaskGroup(of: (Bool, String)?.self) { group in
                group.addTask {
                    do {
                        let response = try await http.execute(HTTPClientRequest(url: url), timeout: timeout)
                        _ = try await response.body.collect(upTo: 64 << 10)
                        return (200 ..< 300).contains(response.status.code) ? (true, "") : (false, "GET \(url) answered \(response.status.code)")
                    } catch {
                        return (false, "GET \(url): \(error)")
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(limit))
                    return Task.isCancelled ? nil : (false, "GET \(url): no whole answer within \(limit) ms")
                }
                var outcome: (Bool, String) = (false, "GET \(url): no answer")
                for await result in group {
                    if let result {
                        outcome = result
                        break
                    }
                }
                group.cancelAll()
                return outcome
            }
        case let .tcp(host, port):
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(timeout)
                    .connect(host: host, port: port).get()
                try? await channel.close()
                return (true, "")
            } catch {
                return (false, "connect \(host):\(port): \(error)")
            }
        case let .command(arguments):
            return await Self.command(arguments, timeoutMillis: spec.timeoutMillis)
        }
    }

    /// A probe program: output discarded, its group killed at the timeout and when it ends.
    static func command(_ arguments: [String], timeoutMillis: Int) async -> (Bool, String) {
        guard let program = Executable.resolve(arguments[0]) else { return (false, "\(arguments[0]): no such program on PATH") }
        do {
            let null = try File.open("/dev/null")
            defer { null.close() }
            let process = try SpawnedProcess.start([program.argument0] + arguments.dropFirst(), executable: program.executable,
                                                   environment: Executable.environment([:]), input: null.descriptor.rawValue,
                                                   output: null.descriptor.rawValue, error: null.descriptor.rawValue)
            let killer = Task {
                try await Task.sleep(for: .milliseconds(timeoutMillis))
                process.signalGroup(SIGKILL)
            }
            let exit = await withCheckedContinuation { (continuation: CheckedContinuation<SpawnedProcess.Exit, Never>) in
                let waiter = Thread { continuation.resume(returning: process.waitForExit { $0.signalGroup(SIGKILL) }) }
                waiter.name = "allegro-probe"
                waiter.start()
            }
            killer.cancel()
            return exit == .exited(0) ? (true, "") : (false, "\(arguments[0]) ended with \(exit)")
        } catch {
            return (false, "\(arguments[0]): \(error)")
        }
    }
}
