import Foundation
import GRDB

/// The state database as start-up found it: healthy, or set aside and made anew.
public struct OpenedState: Sendable {
    public let store: StateStore
    public let state: StoredState
    /// Where an unreadable database was moved (with its -wal and -shm files), if it was.
    public let setAsideTo: String?
    /// Why it was set aside.
    public let reason: String?
}

extension StateStore {
    /// Opens the database at `path` and checks it (`PRAGMA quick_check`). A database SQLite
    /// cannot read (not a database, corrupt pages, or not a regular file at all) is renamed to
    /// `PATH.bad-NANOS` and a new, empty one is made in its place: the caller rebuilds what it
    /// can from the spill. Any other failure (the directory cannot be written, the disk is full)
    /// is thrown: it is no reason to throw the state away.
    public static func openOrSetAside(path: String, nowNanos: UInt64) throws -> OpenedState {
        var reason: String?
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            reason = "\(path) is a directory"
        } else {
            do {
                let store = try StateStore(path: path)
                try store.check()
                return OpenedState(store: store, state: try store.load(), setAsideTo: nil, reason: nil)
            } catch let error as DatabaseError where Self.meansUnreadable(error) {
                reason = error.description
            } catch let error as Unreadable {
                reason = error.description
            }
        }
        let target = path + ".bad-" + String(nowNanos)
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.moveItem(atPath: path + suffix, toPath: target + suffix)
        }
        let store = try StateStore(path: path)
        return OpenedState(store: store, state: try store.load(), setAsideTo: target, reason: reason)
    }

    /// Copies every page in the write-ahead log into the database file and empties the log.
    public func checkpointLog() throws {
        try database.writeWithoutTransaction { db in _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    /// What `PRAGMA quick_check` reported when it was not "ok".
    struct Unreadable: Error, CustomStringConvertible {
        var description: String
    }

    /// Reads every page's structure (not the indexes' contents: that is `integrity_check`'s
    /// slower job) and throws `Unreadable` unless SQLite says "ok".
    func check() throws {
        let rows = try database.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check") }
        guard rows == ["ok"] else { throw Unreadable(description: "quick_check: " + rows.prefix(3).joined(separator: "; ")) }
    }

    private static func meansUnreadable(_ error: DatabaseError) -> Bool {
        switch error.resultCode.primaryResultCode {
        case .SQLITE_CORRUPT, .SQLITE_NOTADB, .SQLITE_CANTOPEN, .SQLITE_FORMAT: true
        default: false
        }
    }
}
