import Glibc

/// A regular file with the calls the spill needs: append, positioned read, fsync, truncate,
/// lock. It owns its descriptor (`FileDescriptor`): `close()` once, or let the last reference go.
public struct File: Sendable {
    public let descriptor: FileDescriptor
    public let path: String

    /// Opens `path` for reading and appending, creating it (mode 0600) if asked.
    public static func open(_ path: String, create: Bool = false, readOnly: Bool = false) throws(SystemError) -> File {
        var flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        if create { flags |= O_CREAT }
        let fd = try SystemCall.run(.open, path: path) { Glibc.open(path, flags, 0o600) }.get("open \(path)")
        return File(descriptor: FileDescriptor(owning: fd), path: path)
    }

    public func close() { descriptor.close() }

    /// The file's size in bytes.
    public func size() throws(SystemError) -> Int {
        var info = stat()
        let raw = descriptor.rawValue
        _ = try SystemCall.run(.fstat, path: path) { fstat(raw, &info) }.get("fstat \(path)")
        return Int(info.st_size)
    }

    /// Writes all of `bytes` at `offset`. A short write that cannot continue (disk full, file
    /// size limit) throws with the bytes already written left in place: the caller truncates.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(SystemError) {
        guard let base = bytes.baseAddress else { return }
        let raw = descriptor.rawValue
        var done = 0
        while done < bytes.count {
            let count = bytes.count - done
            let n = try SystemCall.run(.pwrite, path: path) { pwrite(raw, base + done, count, off_t(offset + done)) }
                .get("pwrite \(path)")
            // pwrite returns 0 only when it cannot make progress: the disk is full.
            guard n > 0 else { throw SystemError("pwrite \(path)", errno: ENOSPC) }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int) throws(SystemError) {
        var failure: SystemError?
        bytes.withUnsafeBytes { raw in
            do throws(SystemError) { try write(raw, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(SystemError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        let raw = descriptor.rawValue
        var done = 0
        while done < buffer.count {
            let count = buffer.count - done
            let n = try SystemCall.run(.pread, path: path) { pread(raw, base + done, count, off_t(offset + done)) }
                .get("pread \(path)")
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// A small file's text (a /proc entry, a state file), at most `limitBytes` of it.
    public static func readText(_ path: String, limitBytes: Int = 1 << 20) throws(SystemError) -> String {
        let file = try open(path, readOnly: true)
        defer { file.close() }
        var bytes = [UInt8](repeating: 0, count: limitBytes)
        var result: Result<Int, SystemError> = .success(0)
        bytes.withUnsafeMutableBytes { buffer in
            do throws(SystemError) { result = .success(try file.read(into: buffer, at: 0)) } catch { result = .failure(error) }
        }
        let count = try result.get()
        return String(decoding: bytes[..<count], as: UTF8.self)
    }

    /// Flushes the file's data to stable storage.
    public func sync() throws(SystemError) {
        let raw = descriptor.rawValue
        _ = try SystemCall.run(.fdatasync, path: path) { fdatasync(raw) }.get("fdatasync \(path)")
    }

    /// Takes an exclusive advisory lock (flock) without waiting: false when another process
    /// holds it. The lock lasts until the descriptor is closed or the process exits.
    public func tryLock() throws(SystemError) -> Bool {
        let raw = descriptor.rawValue
        let outcome = SystemCall.run(.flock, path: path) { flock(raw, LOCK_EX | LOCK_NB) }
        if outcome.errno == EWOULDBLOCK { return false }
        _ = try outcome.get("flock \(path)")
        return true
    }

    public func truncate(to size: Int) throws(SystemError) {
        let raw = descriptor.rawValue
        _ = try SystemCall.run(.ftruncate, path: path) { ftruncate(raw, off_t(size)) }.get("ftruncate \(path)")
    }
}

/// Directory operations: create, list, remove, rename, and fsync of the directory itself (so a
/// new or renamed file survives a crash).
extension File {
    /// Replaces the file at `path` with `bytes` so that a crash or power loss leaves either the
    /// old content or the new, whole: written to `path.tmp`, fsync'd, renamed over `path`, and
    /// the directory fsync'd.
    public static func replaceDurably(_ path: String, with bytes: [UInt8]) throws(SystemError) {
        let temporary = path + ".tmp"
        let file = try File.open(temporary, create: true)
        do throws(SystemError) {
            try file.truncate(to: 0)
            try file.write(bytes, at: 0)
            try file.sync()
        } catch {
            file.close()
            throw error
        }
        file.close()
        try Directory.rename(temporary, to: path)
        let slash = path.lastIndex(of: "/")
        try Directory.sync(slash.map { String(path[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? ".")
    }
}

public enum Directory {
    /// What a path names, without following a symbolic link.
    public enum EntryKind: Sendable, Equatable {
        case regularFile, directory, symbolicLink, other
    }

    /// The kind of entry at `path` (lstat), or nil when nothing is there.
    public static func kind(of path: String) throws(SystemError) -> EntryKind? {
        var info = stat()
        let outcome = SystemCall.run(.lstat, path: path) { lstat(path, &info) }
        if outcome.errno == ENOENT { return nil }
        _ = try outcome.get("lstat \(path)")
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .regularFile
        case S_IFDIR: return .directory
        case S_IFLNK: return .symbolicLink
        default: return .other
        }
    }

    public static func create(_ path: String) throws(SystemError) {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            let current = partial
            let outcome = SystemCall.run(.mkdir, path: current) { mkdir(current, 0o700) }
            if outcome.errno != EEXIST { _ = try outcome.get("mkdir \(current)") }
        }
    }

    /// Names of the entries in `path` (not . or ..), unsorted.
    public static func entries(_ path: String) throws(SystemError) -> [String] {
        let directory = try SystemCall.run(.opendir, path: path, pointer: { opendir(path) }).get("opendir \(path)").pointer
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a file; one that is already gone is not an error.
    public static func remove(_ path: String) throws(SystemError) {
        let outcome = SystemCall.run(.unlink, path: path) { unlink(path) }
        if outcome.errno != ENOENT { _ = try outcome.get("unlink \(path)") }
    }

    public static func rename(_ from: String, to: String) throws(SystemError) {
        _ = try SystemCall.run(.rename, path: from) { Glibc.rename(from, to) }.get("rename \(from) to \(to)")
    }

    /// fsync of the directory itself, so entries created, renamed or removed in it are durable.
    public static func sync(_ path: String) throws(SystemError) {
        let fd = try SystemCall.run(.open, path: path) { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
            .get("open \(path)")
        let directory = FileDescriptor(owning: fd)
        defer { directory.close() }
        let raw = directory.rawValue
        _ = try SystemCall.run(.fsync, path: path) { fsync(raw) }.get("fsync \(path)")
    }
}
