import AllegroSpill
import Foundation
import GRDB

/// One line of the events table: spill damage, retention, forced losses, skips.
public struct StoredEvent: Sendable, Equatable {
    public var atNanos: UInt64
    public var kind: String
    public var detail: String
    public var records: UInt64
}

/// The relay's small state, as of the last start.
public struct StoredState: Sendable {
    /// No relay sequence at or below this was ever handed out by an earlier run... or above it.
    public var reservedThrough: UInt64 = 0
    /// The producer marks reflect every spilled record at or below this relay sequence, and
    /// every record at or below it was fsync'd in the spill (it only ever rises).
    public var marksCheckpoint: UInt64 = 0
    public var cursors: [String: UInt64] = [:]
    public var marks: [ProducerMark] = []
    /// Relay sequences never assigned (skipped after a crash), merged: disjoint and in order.
    public var skips = SkippedSequences()
    /// Numbers an earlier start found gone from the spill and counted as lost (so a later
    /// start does not count them again).
    public var countedGaps: [ClosedRange<UInt64>] = []
    /// Spill segments recorded as sealed and verified, by file name (`path` holds the name).
    public var sealedSegments: [String: SegmentInfo] = [:]
}

/// SQLite state (WAL mode, through GRDB on the system libsqlite3): durable collectors' committed
/// cursors, producers' dedup marks, the relay sequence reserved ahead of use, skipped ranges,
/// session summaries, and a table of spill and retention events. Safe to use from several
/// threads: writes are serialised, and reads (the control port's) run on their own connections
/// beside them, so a read never holds up the spill thread's saves.
public final class StateStore: Sendable {
    let database: DatabasePool

    /// Opens (creating and migrating) the database at `path`.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // FULL: every transaction is fsync'd before it returns, so a saved cursor (answered
            // with COMMITTED) and a sequence reservation survive a power loss, not only kill -9.
            // Writes are few: cursors at most every spill_fsync_interval_ms, state every 200 ms,
            // a reservation per million records.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        database = try DatabasePool(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                CREATE TABLE cursors (name TEXT PRIMARY KEY, committed INTEGER NOT NULL, updated_ns INTEGER NOT NULL);
                CREATE TABLE producers (id BLOB PRIMARY KEY, high_water INTEGER NOT NULL, relay_seq INTEGER NOT NULL,
                                        updated_ns INTEGER NOT NULL);
                CREATE TABLE skips (first INTEGER NOT NULL, last INTEGER NOT NULL);
                CREATE TABLE events (at_ns INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,
                                     records INTEGER NOT NULL);
                """)
        }
        migrator.registerMigration("v2-sessions") { db in
            try db.execute(sql: """
                CREATE TABLE sessions (id TEXT PRIMARY KEY, first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,
                                       records INTEGER NOT NULL, bytes INTEGER NOT NULL, errors INTEGER NOT NULL);
                CREATE INDEX sessions_by_last ON sessions (last_ns);
                CREATE TABLE session_kinds (session TEXT NOT NULL, kind TEXT NOT NULL, records INTEGER NOT NULL,
                                            bytes INTEGER NOT NULL, errors INTEGER NOT NULL, PRIMARY KEY (session, kind));
                CREATE TABLE session_producers (session TEXT NOT NULL, producer TEXT NOT NULL, records INTEGER NOT NULL,
                                                bytes INTEGER NOT NULL, PRIMARY KEY (session, producer));
                """)
        }
        migrator.registerMigration("v3-counted-gaps") { db in
            try db.execute(sql: "CREATE TABLE counted_gaps (first INTEGER NOT NULL, last INTEGER NOT NULL)")
        }
        migrator.registerMigration("v4-sealed-segments") { db in
            try db.execute(sql: """
                CREATE TABLE sealed_segments (name TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL,
                                              records INTEGER NOT NULL, bytes INTEGER NOT NULL, first_ingest_ns INTEGER NOT NULL,
                                              last_ingest_ns INTEGER NOT NULL, last_block_offset INTEGER NOT NULL)
                """)
        }
        try migrator.migrate(database)
    }

    public func load() throws -> StoredState {
        try database.read { db in
            var state = StoredState()
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM meta") {
                let value = UInt64(bitPattern: row["value"])
                switch row["key"] as String {
                case "reserved_through": state.reservedThrough = value
                case "marks_checkpoint": state.marksCheckpoint = value
                default: break
                }
            }
            for row in try Row.fetchAll(db, sql: "SELECT name, committed FROM cursors") {
                state.cursors[row["name"]] = UInt64(bitPattern: row["committed"])
            }
            for row in try Row.fetchAll(db, sql: "SELECT id, high_water, relay_seq FROM producers") {
                let id: [UInt8] = (row["id"] as Data?).map { Array($0) } ?? []
                state.marks.append(ProducerMark(producer: id, producerSequence: UInt64(bitPattern: row["high_water"]),
                                                relaySequence: UInt64(bitPattern: row["relay_seq"])))
            }
            var skips: [ClosedRange<UInt64>] = []
            for row in try Row.fetchAll(db, sql: "SELECT first, last FROM skips ORDER BY first") {
                let first = UInt64(bitPattern: row["first"]), last = UInt64(bitPattern: row["last"])
                if first <= last { skips.append(first ... last) }
            }
            state.skips = SkippedSequences(skips)
            for row in try Row.fetchAll(db, sql: "SELECT * FROM sealed_segments") {
                func number(_ column: String) -> UInt64 { UInt64(bitPattern: row[column]) }
                let segment = SegmentInfo(path: row["name"], firstSequence: number("first"), lastSequence: number("last"),
                                          records: number("records"), bytes: row["bytes"], firstIngestNanos: number("first_ingest_ns"),
                                          lastIngestNanos: number("last_ingest_ns"), lastBlockOffset: row["last_block_offset"])
                state.sealedSegments[segment.name] = segment
            }
            for row in try Row.fetchAll(db, sql: "SELECT first, last FROM counted_gaps ORDER BY first") {
                let first = UInt64(bitPattern: row["first"]), last = UInt64(bitPattern: row["last"])
                if first <= last { state.countedGaps.append(first ... last) }
            }
            return state
        }
    }

    /// Records that relay sequences up to `through` may be handed out.
    public func reserve(through: UInt64) throws {
        try database.write { db in try Self.setMeta(db, "reserved_through", through) }
    }

    public func addSkip(_ range: ClosedRange<UInt64>) throws {
        try database.write { db in
            try db.execute(sql: "INSERT INTO skips (first, last) VALUES (?, ?)",
                           arguments: [Int64(bitPattern: range.lowerBound), Int64(bitPattern: range.upperBound)])
        }
    }

    /// Records segments as sealed and verified; with `replacingAll`, forgets every other one
    /// (start-up knows exactly which exist).
    public func recordSealed(_ segments: [SegmentInfo], replacingAll: Bool = false) throws {
        guard replacingAll || !segments.isEmpty else { return }
        try database.write { db in
            if replacingAll { try db.execute(sql: "DELETE FROM sealed_segments") }
            for segment in segments {
                try db.execute(sql: """
                    INSERT OR REPLACE INTO sealed_segments (name, first, last, records, bytes, first_ingest_ns, last_ingest_ns,
                                                            last_block_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [segment.name, Int64(bitPattern: segment.firstSequence), Int64(bitPattern: segment.lastSequence),
                                     Int64(bitPattern: segment.records), segment.bytes, Int64(bitPattern: segment.firstIngestNanos),
                                     Int64(bitPattern: segment.lastIngestNanos), segment.lastBlockOffset])
            }
        }
    }

    /// Records ranges of numbers recovery counted as lost.
    public func addCountedGaps(_ ranges: [ClosedRange<UInt64>]) throws {
        guard !ranges.isEmpty else { return }
        try database.write { db in
            for range in ranges {
                try db.execute(sql: "INSERT INTO counted_gaps (first, last) VALUES (?, ?)",
                               arguments: [Int64(bitPattern: range.lowerBound), Int64(bitPattern: range.upperBound)])
            }
        }
    }

    /// One group commit's state: producer marks through `checkpoint`, and committed cursors.
    /// Session counts for records through `checkpoint` are saved in the same transaction.
    public func save(marks: [ProducerMark], checkpoint: UInt64, cursors: [String: UInt64], sessions: [SessionDelta],
                     atNanos: UInt64) throws {
        try database.write { db in
            try Self.add(sessions, db)
            for mark in marks { try Self.raise(mark, db, atNanos: atNanos) }
            if checkpoint > 0 {
                try db.cachedStatement(sql: """
                    INSERT INTO meta (key, value) VALUES ('marks_checkpoint', ?)
                    ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)
                    """).execute(arguments: [Int64(bitPattern: checkpoint)])
            }
            for (name, committed) in cursors {
                try db.cachedStatement(sql: """
                    INSERT INTO cursors (name, committed, updated_ns) VALUES (?, ?, ?)
                    ON CONFLICT(name) DO UPDATE SET committed = max(committed, excluded.committed), updated_ns = excluded.updated_ns
                    """).execute(arguments: [name, Int64(bitPattern: committed), Int64(bitPattern: atNanos)])
            }
        }
    }

    /// Replaces every producer mark and sets the checkpoint to exactly `checkpoint`: for a spill
    /// that recovery cut short, whose stored marks may be ahead of what it holds.
    public func replaceMarks(_ marks: [ProducerMark], checkpoint: UInt64, atNanos: UInt64) throws {
        try database.write { db in
            try db.execute(sql: "DELETE FROM producers")
            for mark in marks { try Self.raise(mark, db, atNanos: atNanos) }
            try db.execute(sql: """
                INSERT INTO meta (key, value) VALUES ('marks_checkpoint', ?)
                ON CONFLICT(key) DO UPDATE SET value = excluded.value
                """, arguments: [Int64(bitPattern: checkpoint)])
        }
    }

    /// Stores a producer mark by `ProducerMark.advance`'s rule: the higher producer sequence
    /// wins, with its own relay sequence (SET expressions read the row as it was).
    private static func raise(_ mark: ProducerMark, _ db: Database, atNanos: UInt64) throws {
        var upsert = BoundStatement(try db.cachedStatement(sql: """
            INSERT INTO producers (id, high_water, relay_seq, updated_ns) VALUES (?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET high_water = max(high_water, excluded.high_water),
                relay_seq = CASE WHEN excluded.high_water > high_water THEN excluded.relay_seq ELSE relay_seq END,
                updated_ns = excluded.updated_ns
            """))
        try mark.producer.withUnsafeBytes { producer in
            upsert.bind(blob: producer)
            upsert.bind(mark.producerSequence)
            upsert.bind(mark.relaySequence)
            upsert.bind(atNanos)
            try upsert.run(in: db)
        }
    }

    public func recordEvent(kind: String, detail: String, records: UInt64, atNanos: UInt64) throws {
        try database.write { db in
            try db.execute(sql: "INSERT INTO events (at_ns, kind, detail, records) VALUES (?, ?, ?, ?)",
                           arguments: [Int64(bitPattern: atNanos), kind, detail, Int64(bitPattern: records)])
        }
    }

    public func events() throws -> [StoredEvent] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT at_ns, kind, detail, records FROM events ORDER BY rowid").map { row in
                StoredEvent(atNanos: UInt64(bitPattern: row["at_ns"]), kind: row["kind"], detail: row["detail"],
                            records: UInt64(bitPattern: row["records"]))
            }
        }
    }

    /// The events of one kind, oldest first.
    public func events(kind: String) throws -> [StoredEvent] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT at_ns, kind, detail, records FROM events WHERE kind = ? ORDER BY rowid", arguments: [kind]).map { row in
                StoredEvent(atNanos: UInt64(bitPattern: row["at_ns"]), kind: row["kind"], detail: row["detail"],
                            records: UInt64(bitPattern: row["records"]))
            }
        }
    }

    /// Forgets producers not seen since `nanos` (their records have left the spill too).
    public func pruneProducers(notSeenSince nanos: UInt64) throws {
        try database.write { db in
            try db.execute(sql: "DELETE FROM producers WHERE updated_ns < ?", arguments: [Int64(bitPattern: nanos)])
        }
    }

    private static func setMeta(_ db: Database, _ key: String, _ value: UInt64) throws {
        try db.execute(sql: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       arguments: [key, Int64(bitPattern: value)])
    }
}
