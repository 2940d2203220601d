import AllegroLog

/// Where what the bridge learns of Gitea, by a poll or a webhook, enters the outbox: each change
/// once (`BridgeStore.enqueue`), never a version older than one already published, and for an
/// issue opened since the repository was first polled, the triage steps the configuration names,
/// journaled in the same transaction so that a crash cannot lose them. Triage is the mechanical
/// steps only (a status label, a receipt): Timmy decides everything else.
struct GiteaIntake: Sendable {
    let settings: GiteaSettings
    let store: BridgeStore
    let publisher: OutboxPublisher
    let log: EventLog

    /// Puts `changes` of `repo` in the outbox. `watchedSince`: when the repository was first
    /// polled, nil during its first poll (whose look back is not triaged). `newerOnly`: take a
    /// change only if strictly newer than the version published (a webhook's payload may be
    /// late). Returns whether triage steps were journaled, for the caller to have them done,
    /// and whether a change was left undecided (of the same second as the version published,
    /// with other content: only a read of Gitea now can say which is newer).
    func take(_ changes: [BridgeStore.Change], repo: String, watchedSince: Int64?, nowMillis: Int64, newerOnly: Bool,
              source: String) throws -> (triaged: Bool, undecided: Bool) {
        var steps = 0
        let (added, _, undecided) = try store.enqueue(changes, nowMillis: nowMillis, newerOnly: newerOnly) { change in
            guard let watchedSince, change.kind == "gitea.issue", let number = change.cacheNumber,
                  change.createdMillis >= watchedSince - Int64(settings.pollOverlapMillis) else { return [] }
            let made = triageSteps(repo: repo, number: number)
            steps += made.count
            return made
        }
        if added > 0 {
            log.log(.info, "gitea_changes", ["repo": repo, "records": String(added), "source": source])
            publisher.poke()
        }
        return (steps > 0, undecided > 0)
    }

    /// The configured mechanical steps for a new issue, as Timmy's commands under ids of their
    /// own (so a second poll or a crash never does a step twice): its status label, a receipt
    /// comment in the Report format.
    func triageSteps(repo: String, number: Int64) -> [BridgeStore.PendingCommand] {
        var steps: [BridgeStore.PendingCommand] = []
        if !settings.triageStatus.isEmpty {
            steps.append(.init(operation: Self.operation("triage-status", repo, number), kind: "status", repo: repo, number: number,
                               request: GiteaRecords.json(["status": settings.triageStatus])))
        }
        if settings.triageReceipt, let receipt = GiteaCommands.receipt(repo: repo, number: number, status: settings.triageStatus) {
            steps.append(.init(operation: Self.operation("triage-receipt", repo, number), kind: "comment", repo: repo, number: number,
                               request: GiteaRecords.json(["body": receipt])))
        }
        return steps
    }

    /// A triage step's operation id: one per step and issue (`triage-status:owner:name:7`).
    static func operation(_ step: String, _ repo: String, _ number: Int64) -> String {
        "\(step):\(repo.replacingOccurrences(of: "/", with: ":")):\(number)"
    }
}
