import AllegroLog
import AsyncHTTPClient

/// The running `ServiceKeeper`s, by service name; `apply` brings them to a list of specs (a
/// start, or a reload): a service no longer listed is stopped, a new one started, a changed
/// one stopped and started again with its new spec, an unchanged one left alone.
actor Keepers {
    private var running: [String: (spec: ServiceSpec, keeper: ServiceKeeper, task: Task<Void, Never>)] = [:]
    private let board: SupervisorBoard
    private let reporter: SupervisorReporter
    private let ledger: ChildLedger
    private let http: HTTPClient
    private let log: EventLog

    init(board: SupervisorBoard, reporter: SupervisorReporter, ledger: ChildLedger, http: HTTPClient, log: EventLog) {
        self.board = board
        self.reporter = reporter
        self.ledger = ledger
        self.http = http
        self.log = log
    }

    func apply(_ specs: [ServiceSpec], policy: RestartPolicy, systemdPollMillis: Int) async {
        let wanted = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0) })
        for (name, entry) in running where wanted[name] != entry.spec {
            log.log(.info, wanted[name] == nil ? "service_removed" : "service_changed", ["service": name])
            await stop(name)
        }
        for spec in specs where running[spec.name] == nil {
            let keeper = ServiceKeeper(spec: spec, policy: policy, board: board, reporter: reporter, ledger: ledger, http: http,
                                       systemdPollMillis: systemdPollMillis, log: log)
            running[spec.name] = (spec, keeper, Task { await keeper.run() })
        }
    }

    /// Stops every service (in parallel: each has its own grace).
    func stopAll() async {
        await withTaskGroup(of: Void.self) { group in
            for (_, entry) in running {
                entry.keeper.requestStop()
                group.addTask { await entry.task.value }
            }
        }
        running.removeAll()
    }

    private func stop(_ name: String) async {
        guard let entry = running.removeValue(forKey: name) else { return }
        entry.keeper.requestStop()
        await entry.task.value
        board.remove(name)
    }
}
