import AllegroLog
import AllegroPosix
import Foundation
import Synchronization

/// The processes the supervisor started and has not yet seen end, on disk
/// (`DATA/children.json`: name, pid, start time in clock ticks), rewritten durably at each start
/// and end. A supervisor killed with SIGKILL leaves its services running with nobody reading
/// their output; the next one stops exactly those (the start time tells a leftover from a later
/// process that reuses the pid) before it starts its own, so it adopts nothing and starts no
/// service twice.
final class ChildLedger: Sendable {
    struct Entry: Codable, Sendable, Equatable {
        var pid: Int32
        var startTicks: UInt64

        enum CodingKeys: String, CodingKey {
            case pid
            case startTicks = "start_ticks"
        }
    }

    let path: String
    private let entries = Mutex<[String: Entry]>([:])
    private let log: EventLog

    init(path: String, log: EventLog) {
        self.path = path
        self.log = log
    }

    func started(_ name: String, pid: Int32) {
        guard let ticks = SpawnedProcess.startTicks(of: pid) else { return }
        save { $0[name] = Entry(pid: pid, startTicks: ticks) }
    }

    func ended(_ name: String) { save { $0.removeValue(forKey: name) } }

    private func save(_ change: (inout [String: Entry]) -> Void) {
        entries.withLock { entries in
            change(&entries)
            do {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                try File.replaceDurably(path, with: Array(try encoder.encode(entries)))
            } catch {
                log.log(.error, "ledger_not_saved", ["path": path, "reason": "\(error)"])
            }
        }
    }

    /// Stops what an earlier run left (SIGTERM to each group, SIGKILL after `graceMillis`), and
    /// waits until each is gone. Returns the names stopped.
    func stopLeftovers(graceMillis: Int) async -> [String] {
        guard let text = try? File.readText(path), let data = text.data(using: .utf8),
              let left = try? JSONDecoder().decode([String: Entry].self, from: data) else { return [] }
        var stopped: [String] = []
        for (name, entry) in left.sorted(by: { $0.key < $1.key }) {
            // Only the very process recorded, still the leader of its own group.
            guard entry.pid > 1, SpawnedProcess.startTicks(of: entry.pid) == entry.startTicks,
                  SpawnedProcess.group(of: entry.pid) == entry.pid else { continue }
            log.log(.warning, "leftover_stopping", ["service": name, "pid": String(entry.pid)])
            SpawnedProcess.signalGroup(entry.pid, SIGTERM)
            let deadline = ContinuousClock.now + .milliseconds(graceMillis)
            while SpawnedProcess.startTicks(of: entry.pid) == entry.startTicks && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            SpawnedProcess.signalGroup(entry.pid, SIGKILL)
            // Not our child: init reaps it; wait until it has.
            let reaped = ContinuousClock.now + .seconds(5)
            while SpawnedProcess.startTicks(of: entry.pid) == entry.startTicks && ContinuousClock.now < reaped {
                try? await Task.sleep(for: .milliseconds(20))
            }
            stopped.append(name)
        }
        save { $0.removeAll() }
        return stopped
    }
}
