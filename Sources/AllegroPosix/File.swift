import Glibc

/// A regular file descriptor with the calls the spill needs: append, positioned read, fsync,
/// truncate. Like `Socket`, the value does not own the descriptor: its owner closes it once.
public struct File: Sendable {
    public let descriptor: Int32
    public let path: String

    /// Opens `path` for reading and appending, creating it (mode 0600) if asked.
    public static func open(_ path: String, create: Bool = false, readOnly: Bool = false) throws(SystemError) -> File {
        var flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        if create { flags |= O_CREAT }
        let fd = Glibc.open(path, flags, 0o600)
        guard fd >= 0 else { throw .last("open \(path)") }
        return File(descriptor: fd, path: path)
    }

    public func close() { _ = Glibc.close(descriptor) }

    /// The file's size in bytes.
    public func size() throws(SystemError) -> Int {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .last("fstat \(path)") }
        return Int(info.st_size)
    }

    /// Writes all of `bytes` at `offset`. A short write that cannot continue (disk full, file
    /// size limit) throws with the bytes already written left in place: the caller truncates.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(SystemError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = retryingInterrupts { pwrite(descriptor, base + done, bytes.count - done, off_t(offset + done)) }
            guard n > 0 else { throw n == 0 ? SystemError("pwrite \(path)", errno: ENOSPC) : .last("pwrite \(path)") }
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
        var done = 0
        while done < buffer.count {
            let n = retryingInterrupts { pread(descriptor, base + done, buffer.count - done, off_t(offset + done)) }
            guard n >= 0 else { throw .last("pread \(path)") }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Flushes the file's data to stable storage.
    public func sync() throws(SystemError) {
        guard fdatasync(descriptor) == 0 else { throw .last("fdatasync \(path)") }
    }

    /// Takes an exclusive advisory lock (flock) without waiting: false when another process
    /// holds it. The lock lasts until the descriptor is closed or the process exits.
    public func tryLock() throws(SystemError) -> Bool {
        if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return true }
        if errno == EWOULDBLOCK { return false }
        throw .last("flock \(path)")
    }

    public func truncate(to size: Int) throws(SystemError) {
        guard ftruncate(descriptor, off_t(size)) == 0 else { throw .last("ftruncate \(path)") }
    }
}

/// Directory operations: create, list, remove, rename, and fsync of the directory itself (so a
/// new or renamed file survives a crash).
public enum Directory {
    public static func create(_ path: String) throws(SystemError) {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, 0o700) != 0 && errno != EEXIST { throw .last("mkdir \(partial)") }
        }
    }

    /// Names of the entries in `path` (not . or ..), unsorted.
    public static func entries(_ path: String) throws(SystemError) -> [String] {
        guard let directory = opendir(path) else { throw .last("opendir \(path)") }
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

    public static func remove(_ path: String) throws(SystemError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .last("unlink \(path)") }
    }

    public static func rename(_ from: String, to: String) throws(SystemError) {
        guard Glibc.rename(from, to) == 0 else { throw .last("rename \(from)") }
    }

    public static func sync(_ path: String) throws(SystemError) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .last("open \(path)") }
        defer { Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw .last("fsync \(path)") }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}
