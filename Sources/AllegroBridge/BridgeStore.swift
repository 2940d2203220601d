import AllegroPosix
import GRDB

/// The bridge's small state in SQLite (`bridge.data_dir/bridge.sqlite`, WAL), one writer at a
/// time (GRDB's pool):
///
/// - `outbox`: records to publish on the relay stream, each with the producer sequence it keeps
///   for good. A record is written here (with what it records as seen) in one transaction,
///   before it is published; it leaves once the relay acknowledged it. After a crash the same
///   rows go again under the same sequences, and the relay drops those it had: published once.
///   Sequences start from the wall clock in microseconds when the file is made, so a lost file
///   never reuses numbers the relay remembers.
/// - `gitea_seen`: the version last published of each issue, pull request and comment (its
///   `updated_at` and a SHA-256 of its record: Gitea's times are whole seconds, so two changes in
///   one second share an `updated_at`), so each change is published once; rows older than the
///   buffer's retention are removed.
/// - `poll_state`: when each repository was last polled.
/// - `gitea_cache`: the latest record of each issue and pull request, so Timmy's "issues since"
///   is answered while Gitea is slow; forgotten with `gitea_seen`.
/// - `commands`: Timmy's commands, journaled before their Gitea call (`CommandJournal`).
/// - `model_keys`: the scoped keys of `provide_model_access` (`ModelKeyStore`).
public final class BridgeStore: Sendable {
    let pool: DatabasePool

    /// One record waiting in the outbox.
    public struct OutboxRow: Sendable, Equatable {
        public var sequence: UInt64
        public var kind: String
        public var session: String
        public var payload: String
    }

    /// A change to publish, and the version of the thing it records (`updated_at`).
    public struct Change: Sendable, Equatable {
        public var repo: String
        public var kind: String
        public var id: Int64
        public var updatedAt: String
        public var session: String
        public var payload: String
        /// For issues and pull requests: their number, to keep the latest in the cache.
        /// `updatedMillis`: `updated_at` in Unix milliseconds (which version is newer);
        /// `createdMillis` tells a new issue from one first seen.
        public var cacheNumber: Int64? = nil
        public var updatedMillis: Int64 = 0
        public var createdMillis: Int64 = 0

        /// What tells two versions apart: `updated_at` and a SHA-256 of the record.
        var version: String {
            updatedAt + " " + Hex.sha256(payload)
        }

        /// The `updated_at` of a version, in Unix milliseconds.
        static func updatedMillis(ofVersion version: String) -> Int64? {
            GiteaRecords.millis(String(version.prefix { $0 != " " }))
        }
    }

    public init(path: String) throws {
        pool = try DatabasePool(path: path)
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY NOT NULL, kind TEXT NOT NULL, session TEXT NOT NULL,
                                                   payload TEXT NOT NULL, made_ms INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS gitea_seen (repo TEXT NOT NULL, kind TEXT NOT NULL, id INTEGER NOT NULL,
                                                       updated_at TEXT NOT NULL, seen_ms INTEGER NOT NULL,
                                                       PRIMARY KEY (repo, kind, id)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS poll_state (repo TEXT PRIMARY KEY NOT NULL, polled_ms INTEGER NOT NULL,
                                                       first_ms INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS gitea_cache (repo TEXT NOT NULL, number INTEGER NOT NULL, kind TEXT NOT NULL,
                                                        updated_ms INTEGER NOT NULL, payload TEXT NOT NULL, seen_ms INTEGER NOT NULL,
                                                        PRIMARY KEY (repo, number)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS webhook_deliveries (id TEXT PRIMARY KEY NOT NULL, at_ms INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS commands (op TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, repo TEXT NOT NULL,
                                                     number INTEGER NOT NULL, request TEXT NOT NULL, state TEXT NOT NULL,
                                                     result TEXT NOT NULL, made_ms INTEGER NOT NULL, done_ms INTEGER NOT NULL) WITHOUT ROWID;
                """)
            try db.execute(sql: Self.modelKeysTable)
            try db.execute(sql: "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?)",
                           arguments: [Int64(Clock.wallNanos / 1000)])
        }
    }

    /// Puts the changes not published before in the outbox; returns how many, those seen now
    /// for the first time, and how many `newerOnly` left to a poll (`undecided`). A change older than the version published (by `updated_at`) is
    /// never taken: a poll that read before a webhook's newer payload went out must not follow
    /// it with the older state. `newerOnly` (a webhook's payload, which may be late) also skips
    /// a change of the same second as the version published; the next poll decides those.
    /// `commands` names what to do about a change seen for the first time (triage): journaled
    /// as pending in the same transaction, so a crash cannot lose it.
    @discardableResult
    public func enqueue(_ changes: [Change], nowMillis: Int64, newerOnly: Bool = false,
                        commands: (Change) -> [PendingCommand] = { _ in [] }) throws
        -> (added: Int, firstSeen: [Change], undecided: Int) {
        try pool.write { db in
            var next = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'next_seq'") ?? 1
            var added = 0
            var undecided = 0
            var firstSeen: [Change] = []
            for change in changes {
                // Cached statements: a poll's first round takes hundreds of changes in one transaction.
                let seen = try String.fetchOne(db.cachedStatement(sql: "SELECT updated_at FROM gitea_seen WHERE repo = ? AND kind = ? AND id = ?"),
                                               arguments: [change.repo, change.kind, change.id])
                let version = change.version
                guard seen != version else { continue }
                if let seen, change.updatedMillis > 0, let seenMillis = Change.updatedMillis(ofVersion: seen) {
                    if seenMillis > change.updatedMillis { continue }
                    if newerOnly && seenMillis == change.updatedMillis {
                        undecided += 1
                        continue
                    }
                }
                if seen == nil {
                    firstSeen.append(change)
                    for command in commands(change) {
                        try db.cachedStatement(sql: """
                            INSERT OR IGNORE INTO commands (op, kind, repo, number, request, state, result, made_ms, done_ms)
                            VALUES (?, ?, ?, ?, ?, 'pending', '', ?, 0)
                            """).execute(arguments: [command.operation, command.kind, command.repo, command.number, command.request, nowMillis])
                    }
                }
                try db.cachedStatement(sql: "INSERT INTO outbox (seq, kind, session, payload, made_ms) VALUES (?, ?, ?, ?, ?)")
                    .execute(arguments: [next, change.kind, change.session, change.payload, nowMillis])
                try db.cachedStatement(sql: """
                    INSERT INTO gitea_seen (repo, kind, id, updated_at, seen_ms) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (repo, kind, id) DO UPDATE SET updated_at = excluded.updated_at, seen_ms = excluded.seen_ms
                    """).execute(arguments: [change.repo, change.kind, change.id, version, nowMillis])
                if let number = change.cacheNumber {
                    try db.cachedStatement(sql: """
                        INSERT INTO gitea_cache (repo, number, kind, updated_ms, payload, seen_ms) VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT (repo, number) DO UPDATE SET kind = excluded.kind, updated_ms = excluded.updated_ms,
                            payload = excluded.payload, seen_ms = excluded.seen_ms
                        """).execute(arguments: [change.repo, number, change.kind, change.updatedMillis, change.payload, nowMillis])
                }
                next += 1
                added += 1
            }
            try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'next_seq'", arguments: [next])
            return (added, firstSeen, undecided)
        }
    }

    /// The oldest rows waiting, in sequence order.
    public func pending(limit: Int) throws -> [OutboxRow] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, kind, session, payload FROM outbox ORDER BY seq LIMIT ?", arguments: [limit]).map {
                OutboxRow(sequence: UInt64(bitPattern: $0["seq"]), kind: $0["kind"], session: $0["session"], payload: $0["payload"])
            }
        }
    }

    /// Rows the relay acknowledged leave the outbox.
    public func acknowledged(through sequence: UInt64) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM outbox WHERE seq <= ?", arguments: [Int64(bitPattern: sequence)])
        }
    }

    public func polled(_ repo: String) throws -> Int64? {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT polled_ms FROM poll_state WHERE repo = ?", arguments: [repo]) }
    }

    /// When the repository was first polled (what was opened before is not new to triage).
    public func firstPolled(_ repo: String) throws -> Int64? {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT first_ms FROM poll_state WHERE repo = ?", arguments: [repo]) }
    }

    public func setPolled(_ repo: String, atMillis: Int64) throws {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO poll_state (repo, polled_ms, first_ms) VALUES (?, ?, ?)
                ON CONFLICT (repo) DO UPDATE SET polled_ms = excluded.polled_ms
                """, arguments: [repo, atMillis, atMillis])
        }
    }

    /// Forgets what was seen before `millis` (the relay's buffer no longer holds it either).
    public func forgetSeen(before millis: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM gitea_seen WHERE seen_ms < ?", arguments: [millis])
            try db.execute(sql: "DELETE FROM gitea_cache WHERE seen_ms < ?", arguments: [millis])
            try db.execute(sql: "DELETE FROM commands WHERE state != 'pending' AND done_ms < ?", arguments: [millis])
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE at_ms < ?", arguments: [millis])
        }
    }

    /// Records a webhook delivery id; false when it was seen before.
    public func firstDelivery(_ id: String, nowMillis: Int64) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO webhook_deliveries (id, at_ms) VALUES (?, ?)", arguments: [String(id.prefix(200)), nowMillis])
            return db.changesCount == 1
        }
    }

    /// The cached records of a repository's issues and pull requests updated at or after
    /// `sinceMillis`, oldest first, at most `limit`.
    public func cachedIssues(repo: String, sinceMillis: Int64, limit: Int) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(db, sql: """
                SELECT payload FROM gitea_cache WHERE repo = ? AND updated_ms >= ? ORDER BY updated_ms, number LIMIT ?
                """, arguments: [repo, sinceMillis, limit])
        }
    }

    public func cachedIssue(repo: String, number: Int64) throws -> String? {
        try pool.read { db in
            try String.fetchOne(db, sql: "SELECT payload FROM gitea_cache WHERE repo = ? AND number = ?", arguments: [repo, number])
        }
    }

    /// Puts records in the outbox that describe no Gitea object (Reports of Timmy's commands).
    public func enqueueRecords(_ records: [(kind: String, session: String, payload: String)], nowMillis: Int64) throws {
        try pool.write { db in
            var next = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'next_seq'") ?? 1
            for record in records {
                try db.execute(sql: "INSERT INTO outbox (seq, kind, session, payload, made_ms) VALUES (?, ?, ?, ?, ?)",
                               arguments: [next, record.kind, record.session, record.payload, nowMillis])
                next += 1
            }
            try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'next_seq'", arguments: [next])
        }
    }

    public func outboxCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox") ?? 0 }
    }
}
