import AllegroLog
import AsyncHTTPClient

/// The running `ServiceKeeper`s, by service name; `apply` brings them to a list of specs (a
/// start, or a reload) and `hold` to the duties this host holds: a service no longer wanted
/// (not listed, or its duty not held) is stopped, a new one started, a changed one stopped and
/// started again with its new spec, an unchanged one left alone. A duty's service gets
/// ALLEGRO_DUTY and ALLEGRO_DUTY_EPOCH in its environment (a new epoch is a changed spec).
actor Keepers {
    private var running: [String: (spec: ServiceSpec, keeper: ServiceKeeper, task: Task<Void, Never>)] = [:]
    private var specs: [ServiceSpec] = []
    private var policy = RestartPolicy()
    private var systemdPollMillis = 2_000
    /// The duties held, with their epochs.
    private var duties: [String: Int64] = [:]
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
        self.specs = specs
        self.policy = policy
        self.systemdPollMillis = systemdPollMillis
        await reconcile()
    }

    /// The duties this host holds now (failover), with their epochs.
    func hold(_ duties: [String: Int64]) async {
        self.duties = duties
        await reconcile()
    }

    /// One reconciliation at a time (the actor is re-entered at each stop's await): a call that
    /// comes meanwhile makes the running one go round again with the newest state.
    private var reconciling = false
    private var again = false

    private func reconcile() async {
        if reconciling {
            again = true
            return
        }
        reconciling = true
        repeat {
            again = false
            await reconcileOnce()
        } while again
        reconciling = false
    }

    private func reconcileOnce() async {
        let specs = self.specs.compactMap { spec -> ServiceSpec? in
            guard let duty = spec.duty else { return spec }
            guard let epoch = duties[duty] else { return nil }
            var held = spec
            held.environment["ALLEGRO_DUTY"] = duty
            held.environment["ALLEGRO_DUTY_EPOCH"] = String(epoch)
            return held
        }
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
