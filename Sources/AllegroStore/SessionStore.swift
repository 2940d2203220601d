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

    static func add(_ deltas: [SessionDelta], _ db: Database) throws {
        guard !deltas.isEmpty else { return }
        var sessions: [String: SessionDelta] = [:]
        var kinds: [[String]: SessionDelta] = [:]
        var producers: [[String]: SessionDelta] = [:]
        for delta in deltas {
            sessions[delta.session, default: SessionDelta(session: delta.session, kind: "", producer: "")].merge(delta)
            kinds[[delta.session, delta.kind], default: SessionDelta(session: delta.session, kind: delta.kind, producer: "")].merge(delta)
            producers[[delta.session, delta.producer], default: SessionDelta(session: delta.session, kind: "", producer: delta.producer)].merge(delta)
        }
        for total in sessions.values {
            try db.cachedStatement(sql: """
                INSERT INTO sessions (id, first_ns, last_ns, records, bytes, errors) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET first_ns = min(first_ns, excluded.first_ns), last_ns = max(last_ns, excluded.last_ns),
                    records = records + excluded.records, bytes = bytes + excluded.bytes, errors = errors + excluded.errors
                """).execute(arguments: [total.session, Int64(bitPattern: total.firstNanos), Int64(bitPattern: total.lastNanos),
                                 Int64(bitPattern: total.records), Int64(bitPattern: total.bytes), Int64(bitPattern: total.errors)])
        }
        for total in kinds.values {
            try db.cachedStatement(sql: """
                INSERT INTO session_kinds (session, kind, records, bytes, errors) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(session, kind) DO UPDATE SET records = records + excluded.records, bytes = bytes + excluded.bytes,
                    errors = errors + excluded.errors
                """).execute(arguments: [total.session, total.kind, Int64(bitPattern: total.records), Int64(bitPattern: total.bytes),
                                 Int64(bitPattern: total.errors)])
        }
        for total in producers.values {
            try db.cachedStatement(sql: """
                INSERT INTO session_producers (session, producer, records, bytes) VALUES (?, ?, ?, ?)
                ON CONFLICT(session, producer) DO UPDATE SET records = records + excluded.records, bytes = bytes + excluded.bytes
                """).execute(arguments: [total.session, total.producer, Int64(bitPattern: total.records), Int64(bitPattern: total.bytes)])
        }
    }

    private static func summary(_ row: Row) -> SessionSummary {
        SessionSummary(id: row["id"], firstSeenNanos: count(row, "first_ns"), lastSeenNanos: count(row, "last_ns"),
                       records: count(row, "records"), bytes: count(row, "bytes"), errors: count(row, "errors"))
    }

    private static func count(_ row: Row, _ column: String) -> UInt64 {
        UInt64(bitPattern: (row[column] as Int64?) ?? 0)
    }
}
