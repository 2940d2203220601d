import AllegroPosix
import GRDB

/// The scoped keys of `provide_model_access` (table `model_keys` in `bridge.sqlite`): each is
/// kept only as its SHA-256 (the key itself is shown once, to Timmy, and never stored or logged),
/// with the models it may use, its expiry, its revocation and the usage counted against it.
extension BridgeStore {
    public struct ModelKey: Sendable, Equatable {
        public var id: String
        public var models: [String]
        public var expiresMillis: Int64
        /// 0: not revoked.
        public var revokedMillis: Int64
        public var madeMillis: Int64
        public var requests: Int64
        public var inputTokens: Int64
        public var outputTokens: Int64
    }

    static let modelKeysTable = """
        CREATE TABLE IF NOT EXISTS model_keys (id TEXT PRIMARY KEY NOT NULL, key_sha256 TEXT NOT NULL UNIQUE, models TEXT NOT NULL,
                                               expires_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL, made_ms INTEGER NOT NULL,
                                               requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL)
                                               WITHOUT ROWID;
        """

    /// SHA-256 of a key, lowercase hex: what is stored and looked up.
    static func modelKeyHash(_ key: String) -> String {
        Hex.sha256(key)
    }

    func issueModelKey(id: String, key: String, models: [String], expiresMillis: Int64, nowMillis: Int64) throws {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO model_keys (id, key_sha256, models, expires_ms, revoked_ms, made_ms, requests, input_tokens, output_tokens)
                VALUES (?, ?, ?, ?, 0, ?, 0, 0, 0)
                """, arguments: [id, Self.modelKeyHash(key), models.joined(separator: "\n"), expiresMillis, nowMillis])
        }
    }

    /// The key's record, whatever its state (expired and revoked ones too: the caller says why).
    func modelKey(key: String) throws -> ModelKey? {
        try pool.read { db in
            return try Row.fetchOne(db, sql: "SELECT * FROM model_keys WHERE key_sha256 = ?", arguments: [Self.modelKeyHash(key)]).map(Self.modelKey)
        }
    }

    func modelKeys() throws -> [ModelKey] {
        try pool.read { db in
            return try Row.fetchAll(db, sql: "SELECT * FROM model_keys ORDER BY made_ms, id").map(Self.modelKey)
        }
    }

    /// Revokes the key: whether it exists.
    func revokeModelKey(id: String, nowMillis: Int64) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "UPDATE model_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms = 0", arguments: [nowMillis, id])
            return try Int.fetchOne(db, sql: "SELECT count(*) FROM model_keys WHERE id = ?", arguments: [id]) == 1
        }
    }

    func recordModelUsage(id: String, inputTokens: Int64, outputTokens: Int64) throws {
        try pool.write { db in
            try db.execute(sql: """
                UPDATE model_keys SET requests = requests + 1, input_tokens = input_tokens + ?, output_tokens = output_tokens + ? WHERE id = ?
                """, arguments: [inputTokens, outputTokens, id])
        }
    }

    /// Forgets keys that expired before `beforeMillis`.
    func forgetModelKeys(expiredBefore beforeMillis: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM model_keys WHERE expires_ms < ?", arguments: [beforeMillis])
        }
    }

    private static func modelKey(_ row: Row) -> ModelKey {
        let models: String = row["models"]
        return ModelKey(id: row["id"], models: models.split(separator: "\n").map(String.init), expiresMillis: row["expires_ms"],
                        revokedMillis: row["revoked_ms"], madeMillis: row["made_ms"], requests: row["requests"],
                        inputTokens: row["input_tokens"], outputTokens: row["output_tokens"])
    }
}
