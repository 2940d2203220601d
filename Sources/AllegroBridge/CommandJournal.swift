import GRDB

/// Timmy's commands in the bridge's SQLite, each written before its Gitea call: a command id
/// (Timmy's operation id) is done at most once. A retried command finds its earlier outcome; a
/// command a crash left pending is finished at the next start by looking at Gitea first.
extension BridgeStore {
    /// What the journal held for an operation id when a command arrived.
    public enum JournalEntry: Sendable, Equatable {
        /// First seen now; journaled as pending.
        case new
        /// Journaled before and not finished (a crash, or a call still running).
        case pending
        /// Finished: `state` is "done" or "failed", `result` its JSON.
        case finished(state: String, result: String)
        /// The id was used for another command.
        case conflict(kind: String, repo: String, number: Int64)
    }

    /// A command journaled and not finished.
    public struct PendingCommand: Sendable, Equatable {
        public var operation: String
        public var kind: String
        public var repo: String
        public var number: Int64
        public var request: String
    }

    public func journal(operation: String, kind: String, repo: String, number: Int64, request: String, nowMillis: Int64) throws -> JournalEntry {
        try pool.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT kind, repo, number, request, state, result FROM commands WHERE op = ?",
                                          arguments: [operation]) {
                let same = row["kind"] as String == kind && row["repo"] as String == repo && row["number"] as Int64 == number
                    && row["request"] as String == request
                guard same else { return .conflict(kind: row["kind"], repo: row["repo"], number: row["number"]) }
                let state: String = row["state"]
                return state == "pending" ? .pending : .finished(state: state, result: row["result"])
            }
            try db.execute(sql: """
                INSERT INTO commands (op, kind, repo, number, request, state, result, made_ms, done_ms)
                VALUES (?, ?, ?, ?, ?, 'pending', '', ?, 0)
                """, arguments: [operation, kind, repo, number, request, nowMillis])
            return .new
        }
    }

    public func finish(operation: String, state: String, result: String, nowMillis: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE commands SET state = ?, result = ?, done_ms = ? WHERE op = ?",
                           arguments: [state, result, nowMillis, operation])
        }
    }

    /// In the order they were journaled; of one moment (a triage's steps), a status before a
    /// comment, so a receipt never announces a label that is not yet there.
    public func pendingCommands() throws -> [PendingCommand] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT op, kind, repo, number, request FROM commands WHERE state = 'pending'
                ORDER BY made_ms, CASE kind WHEN 'status' THEN 0 ELSE 1 END, op
                """).map {
                PendingCommand(operation: $0["op"], kind: $0["kind"], repo: $0["repo"], number: $0["number"], request: $0["request"])
            }
        }
    }
}
