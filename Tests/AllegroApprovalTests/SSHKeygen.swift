import AllegroApproval
import Foundation
import Testing

/// The real `ssh-keygen` (Debian openssh-client) in a scratch directory: throwaway keys, real
/// signatures, and its own verdict to compare with Allegro's.
final class SSHKeygen {
    let directory: URL
    static let path = "/usr/bin/ssh-keygen"

    init() throws {
        // ssh-keygen may refuse a signature before it reads the message: a write to its closed
        // standard input must be an error, not a SIGPIPE that ends the test process.
        signal(SIGPIPE, SIG_IGN)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("allegro-approval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// Runs ssh-keygen with `arguments` and `input` on standard input; its exit status.
    @discardableResult
    func run(_ arguments: [String], input: Data? = nil) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.path)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let stdin = Pipe()
        process.standardInput = stdin
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        if let input { try? stdin.fileHandleForWriting.write(contentsOf: input) }
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A new key pair `name` of `type` (ed25519, rsa, ecdsa); the public key line's type and base64.
    func key(_ name: String, type: String = "ed25519") throws -> (type: String, base64: String) {
        try run(["-q", "-t", type, "-N", "", "-C", name, "-f", url(name).path] + (type == "rsa" ? ["-b", "2048"] : []))
        let line = try String(contentsOf: url(name + ".pub"), encoding: .utf8).split(separator: " ")
        return (String(line[0]), String(line[1]))
    }

    /// The armored signature `key` makes over `message` in `namespace`.
    func sign(_ message: [UInt8], key: String, namespace: String = SSHSignature.namespace) throws -> [UInt8] {
        let file = url("message-\(UUID().uuidString)")
        try Data(message).write(to: file)
        defer {
            try? FileManager.default.removeItem(at: file)
            try? FileManager.default.removeItem(at: URL(fileURLWithPath: file.path + ".sig"))
        }
        #expect(try run(["-Y", "sign", "-n", namespace, "-f", url(key).path, file.path]) == 0)
        return Array(try Data(contentsOf: URL(fileURLWithPath: file.path + ".sig")))
    }

    /// ssh-keygen's verdict on `signature` over `message` for principal `timmy`.
    func verifies(_ message: [UInt8], signature: [UInt8], allowedSigners: String) throws -> Bool {
        let signers = url("allowed_signers"), sig = url("candidate.sig")
        try allowedSigners.write(to: signers, atomically: false, encoding: .utf8)
        try Data(signature).write(to: sig)
        return try run(["-Y", "verify", "-f", signers.path, "-I", "timmy", "-n", SSHSignature.namespace, "-s", sig.path],
                       input: Data(message)) == 0
    }
}

/// A canonical statement for `action` expiring `validFor` seconds after `now`.
func statement(_ action: String = "close_issue", now: Int64, validFor: Int64 = 3600, nonce: String = "0123456789abcdef0123456789abcdef",
               target: [(String, String)] = [("repo", "timmy/home"), ("issue", "42")]) -> [UInt8] {
    var lines = ["allegro-approval/v1", "action=\(action)"] + target.map { "\($0.0)=\($0.1)" }
    lines += ["not_after=\(UTCTimestamp.text(now + validFor))", "nonce=\(nonce)", "audience=allegro"]
    return Array((lines.joined(separator: "\n") + "\n").utf8)
}
