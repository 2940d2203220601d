import GRDB
import GRDBSQLite

/// Runs one of GRDB's cached statements with its values bound straight through SQLite's C API,
/// for the upserts the spill thread makes at every state save (every 200 ms, one per producer
/// and three per session): no `StatementArguments` array, no boxed value, no copy of a text or
/// blob. With 64 sessions GRDB's arguments cost about 15,000 allocations a second (BENCHMARKS.md).
///
/// Text and blobs are bound `SQLITE_STATIC`: their bytes are borrowed for the one step, which
/// happens inside the closures that lend them, and the bindings are cleared right after it, so
/// SQLite never holds a pointer past its lender. Every parameter is bound on each run.
struct BoundStatement {
    private let statement: Statement
    private var handle: OpaquePointer { statement.sqliteStatement }
    private var index: Int32 = 0

    init(_ statement: Statement) { self.statement = statement }

    /// Binds the next parameter.
    mutating func bind(_ value: UInt64) {
        index += 1
        sqlite3_bind_int64(handle, index, Int64(bitPattern: value))
    }

    /// Binds the next parameter to `text`'s UTF-8 bytes (borrowed; see the type's comment).
    mutating func bind(text: UnsafeRawBufferPointer) {
        index += 1
        let bytes = UnsafeRawPointer(text.baseAddress ?? Self.empty).assumingMemoryBound(to: CChar.self)
        sqlite3_bind_text(handle, index, bytes, Int32(clamping: text.count), Self.borrowed)
    }

    /// Binds the next parameter to `bytes` as a blob (borrowed; see the type's comment).
    mutating func bind(blob bytes: UnsafeRawBufferPointer) {
        index += 1
        sqlite3_bind_blob(handle, index, bytes.baseAddress ?? Self.empty, Int32(clamping: bytes.count), Self.borrowed)
    }

    /// Steps the statement once (it must finish: these are writes), then resets it and clears
    /// its bindings whatever happened. Throws SQLite's error, with its message and the SQL.
    func run(in db: Database) throws {
        assert(index == sqlite3_bind_parameter_count(handle), "every parameter is bound on each run")
        let code = sqlite3_step(handle)
        let message = code == SQLITE_DONE ? nil : db.sqliteConnection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
        }
    }

    /// SQLite's SQLITE_STATIC, a null destructor: SQLite neither copies nor frees the bytes.
    private static let borrowed: sqlite3_destructor_type? = nil
    /// Where an empty text or blob points: SQLite reads no byte of it, but a null pointer would
    /// bind NULL instead of an empty value.
    private static var empty: UnsafeRawPointer { UnsafeRawPointer(("" as StaticString).utf8Start) }
}

/// Lends a string's UTF-8 bytes without copying them when it is stored contiguously (native
/// Swift strings are); otherwise through one copy.
func withUTF8Bytes<R>(_ text: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    if let result = try text.utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
        return result
    }
    return try Array(text.utf8).withUnsafeBytes(body)
}
