import AllegroSpill
import Foundation
import GRDB

/// One Hermes session as the relay saw it: first and last ingest time, record and payload
/// byte counts, and records of error kinds.
public struct SessionSummary: Codable, Sendable, Equatable {
    public var id: String
    public var firstSeenNanos: UInt64
    public var lastSeenNanos: UInt64
    public var records: UInt64
    public var bytes: UInt64
    public var errors: UInt64
}

/// A session with its counts by event kind and by producer.
public struct SessionDetail: Codable, Sendable, Equatable {
    public struct KindCount: Codable, Sendable, Equatable {
        public var kind: String
        public var records: UInt64
        public var bytes: UInt64
        public var errors: UInt64
    }

    public struct ProducerCount: Codable, Sendable, Equatable {
        public var producer: String
        public var records: UInt64
        public var bytes: UInt64
    }

    public var summary: SessionSummary
    public var kinds: [KindCount]
    public var producers: [ProducerCount]
}

extension StateStore {
    /// Newest first (by last record), at most `limit`.
    public func sessions(limit: Int) throws -> [SessionSummary] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM sessions ORDER BY last_ns DESC, id LIMIT ?", arguments: [limit])
                .map(Self.summary)
        }
    }

    /// One session, or nil when the relay holds no summary for it.
    public func session(id: String) throws -> SessionDetail? {
        try database.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM sessions WHERE id = ?", arguments: [id]) else { return nil }
            let kinds = try Row.fetchAll(db, sql: "SELECT * FROM session_kinds WHERE session = ? ORDER BY records DESC, kind",
                                         arguments: [id]).map { row in
                SessionDetail.KindCount(kind: row["kind"], records: Self.count(row, "records"), bytes: Self.count(row, "bytes"),
                                        errors: Self.count(row, "errors"))
            }
            let producers = try Row.fetchAll(db, sql: "SELECT * FROM session_producers WHERE session = ? ORDER BY records DESC, producer",
                                             arguments: [id]).map { row in
                SessionDetail.ProducerCount(producer: row["producer"], records: Self.count(row, "records"),
                                            bytes: Self.count(row, "bytes"))
            }
            return SessionDetail(summary: Self.summary(row), kinds: kinds, producers: producers)
        }
    }

    /// Forgets sessions whose last record is older than `nanos` (retention removed them).
    public func pruneSessions(lastSeenBefore nanos: UInt64) throws {
        try database.write { db in
            let cutoff = Int64(bitPattern: nanos)
            try db.execute(sql: """
                DELETE FROM session_kinds WHERE session IN (SELECT id FROM sessions WHERE last_ns < ?1);
                DELETE FROM session_producers WHERE session IN (SELECT id FROM sessions WHERE last_ns < ?1);
                DELETE FROM sessions WHERE last_ns < ?1;
                """, arguments: [cutoff])
        }
    }

    /// Adds each delta to its session, its (session, kind) and its (session, producer) rows. The
    /// upserts add counts and widen time ranges, so deltas sharing a session need no merging
    /// first; their values are bound in place (`BoundStatement`), so a save allocates nothing
    /// per session.
    static func add(_ deltas: [SessionDelta], _ db: Database) throws {
        guard !deltas.isEmpty else { return }
        let session = BoundStatement(try db.cachedStatement(sql: """
            INSERT INTO sessions (id, first_ns, last_ns, records, bytes, errors) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET first_ns = min(first_ns, excluded.first_ns), last_ns = max(last_ns, excluded.last_ns),
                records = records + excluded.records, bytes = bytes + excluded.bytes, errors = errors + excluded.errors
            """))
        let kind = BoundStatement(try db.cachedStatement(sql: """
            INSERT INTO session_kinds (session, kind, records, bytes, errors) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(session, kind) DO UPDATE SET records = records + excluded.records, bytes = bytes + excluded.bytes,
                errors = errors + excluded.errors
            """))
        let producer = BoundStatement(try db.cachedStatement(sql: """
            INSERT INTO session_producers (session, producer, records, bytes) VALUES (?, ?, ?, ?)
            ON CONFLICT(session, producer) DO UPDATE SET records = records + excluded.records, bytes = bytes + excluded.bytes
            """))
        for delta in deltas {
            try withUTF8Bytes(delta.session) { id in
                var row = session
                row.bind(text: id)
                row.bind(delta.firstNanos)
                row.bind(delta.lastNanos)
                row.bind(delta.records)
                row.bind(delta.bytes)
                row.bind(delta.errors)
                try row.run(in: db)
                try withUTF8Bytes(delta.kind) { try addCounts(kind, session: id, name: $0, delta, errors: true, db) }
                try withUTF8Bytes(delta.producer) { try addCounts(producer, session: id, name: $0, delta, errors: false, db) }
            }
        }
    }

    /// One (session, name) row's upsert: records, bytes and, for kinds, errors.
    private static func addCounts(_ statement: BoundStatement, session: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer,
                                  _ delta: SessionDelta, errors: Bool, _ db: Database) throws {
        var row = statement
        row.bind(text: session)
        row.bind(text: name)
        row.bind(delta.records)
        row.bind(delta.bytes)
        if errors { row.bind(delta.errors) }
        try row.run(in: db)
    }

    private static func summary(_ row: Row) -> SessionSummary {
        SessionSummary(id: row["id"], firstSeenNanos: count(row, "first_ns"), lastSeenNanos: count(row, "last_ns"),
                       records: count(row, "records"), bytes: count(row, "bytes"), errors: count(row, "errors"))
    }

    private static func count(_ row: Row, _ column: String) -> UInt64 {
        UInt64(bitPattern: (row[column] as Int64?) ?? 0)
    }
}
