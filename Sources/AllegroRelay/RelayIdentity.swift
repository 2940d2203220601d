import AllegroLog
import AllegroPosix

/// The relay's identity, sent as `relay_id` in WELCOME: the configured `relay_id` when one is
/// set, else the data directory's own, made at its first start (`relay-` and 16 random hex
/// digits) and kept in `DATA/relay_id`. A collector that reads several relays keys its per-relay
/// state by it, so two relays never share one and a restart never changes it. The file is
/// written whole and renamed into place (temporary file, fsync, rename, directory fsync); one
/// that cannot be used (empty, too long, not one line of printable ASCII) is set aside as
/// `relay_id.bad-NANOS` and a new identity made, since start-up never stops for small damage.
enum RelayIdentity {
    static let fileName = "relay_id"

    static func resolve(configured: String, dataDirectory: String, log: EventLog) throws(SystemError) -> String {
        if !configured.isEmpty { return configured }
        let path = dataDirectory + "/" + fileName
        if let kept = try read(path), isUsable(kept) { return kept }
        if try Directory.kind(of: path) != nil {
            let aside = path + ".bad-\(Clock.wallNanos)"
            try Directory.rename(path, to: aside)
            log.log(.warning, "relay_id_set_aside", ["path": path, "moved_to": aside, "consequence": "a new relay identity"])
        }
        var generator = SystemRandomNumberGenerator()
        let made = "relay-" + String(generator.next() as UInt64, radix: 16).leftPadded(to: 16)
        try File.replaceDurably(path, with: Array((made + "\n").utf8))
        log.log(.info, "relay_id_made", ["relay_id": made, "path": path])
        return made
    }

    /// The identity kept at `path` (its first line), or nil when no regular file is there.
    private static func read(_ path: String) throws(SystemError) -> String? {
        guard try Directory.kind(of: path) == .regularFile else { return nil }
        let file = try File.open(path, readOnly: true)
        defer { file.close() }
        var bytes = [UInt8](repeating: 0, count: 512)
        var failure: SystemError?
        let count = bytes.withUnsafeMutableBytes { raw in
            do throws(SystemError) { return try file.read(into: raw, at: 0) } catch { failure = error; return 0 }
        }
        if let failure { throw failure }
        var text = bytes.prefix(count)
        if text.last == 0x0A { text = text.dropLast() }
        return String(decoding: text, as: UTF8.self)
    }

    /// 1 ... 255 bytes of printable ASCII, as WELCOME's str8 carries.
    static func isUsable(_ identity: String) -> Bool {
        (1 ... 255).contains(identity.utf8.count) && identity.utf8.allSatisfy { (0x21 ... 0x7E).contains($0) }
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
