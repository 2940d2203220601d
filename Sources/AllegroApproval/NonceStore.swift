import GRDB
import Synchronization

/// Remembers every nonce an accepted approval used, for good (kept past expiry: a replayed
/// statement is refused even after its `not_after`, should a clock go back).
public protocol NonceStore: Sendable {
    /// Records `nonce`; false when it was recorded before (a replay).
    func consume(_ nonce: String, notAfterSeconds: Int64, action: String, atSeconds now: Int64) throws -> Bool
    /// Whether `nonce` was recorded.
    func isUsed(_ nonce: String) throws -> Bool
}

/// Nonces in SQLite (`DATA/approvals.sqlite`, WAL): the primary key makes "seen before" one
/// atomic insert, so two bridges racing on one statement cannot both accept it.
public final class SQLiteNonceStore: NonceStore {
    private let pool: DatabasePool

    public init(path: String) throws {
        pool = try DatabasePool(path: path)
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS used_nonces (
                    nonce TEXT PRIMARY KEY NOT NULL,
                    action TEXT NOT NULL,
                    not_after_s INTEGER NOT NULL,
                    used_at_s INTEGER NOT NULL
                ) WITHOUT ROWID
                """)
        }
    }

    public func consume(_ nonce: String, notAfterSeconds: Int64, action: String, atSeconds now: Int64) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO used_nonces (nonce, action, not_after_s, used_at_s) VALUES (?, ?, ?, ?)",
                           arguments: [nonce, action, notAfterSeconds, now])
            return db.changesCount == 1
        }
    }

    public func isUsed(_ nonce: String) throws -> Bool {
        try pool.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM used_nonces WHERE nonce = ?", arguments: [nonce]) ?? false }
    }
}

/// Nonces in memory, for one process (tests, a one-off check).
public final class MemoryNonceStore: NonceStore {
    private let used = Mutex(Set<String>())

    public init() {}

    public func consume(_ nonce: String, notAfterSeconds: Int64, action: String, atSeconds now: Int64) throws -> Bool {
        used.withLock { $0.insert(nonce).inserted }
    }

    public func isUsed(_ nonce: String) throws -> Bool { used.withLock { $0.contains(nonce) } }
}
