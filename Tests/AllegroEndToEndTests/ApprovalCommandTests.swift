import AllegroTestSupport
import Foundation
import Testing

/// `allegro approval verify` on the real binary: a refusal says why, exits 1, and with
/// `--publish` reaches Timmy's stream as an `allegro.approval` record naming the approval.
@Suite struct ApprovalCommandTests {
    @Test func aRefusedApprovalIsPublishedOnTheStreamWithItsReason() throws {
        let relay = try RelayProcess(["--http", "off"])
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let statement = scratch.appendingPathComponent("statement.txt"), signature = scratch.appendingPathComponent("statement.txt.sig")
        let signers = scratch.appendingPathComponent("allowed_signers")
        try "allegro-approval/v1\naction=close_issue\nrepo=timmy/home\nissue=7\nnot_after=2026-12-01T10:00:00Z\nnonce=0123456789abcdef0123456789abcdef\naudience=allegro\n"
            .write(to: statement, atomically: false, encoding: .utf8)
        try "-----BEGIN SSH SIGNATURE-----\nnot base64!\n-----END SSH SIGNATURE-----\n".write(to: signature, atomically: false, encoding: .utf8)
        try "# Timmy's keys would be here\n".write(to: signers, atomically: false, encoding: .utf8)
        let result = try AllegroBinary.run(["approval", "verify", "--allowed-signers", signers.path, "--signature", signature.path,
                                            "--statement", statement.path, "--publish", relay.address], timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.contains("allegro approval verify: refused: base64:"), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        let tail = try AllegroBinary.run(["tail", "--relay", relay.address, "--from", "earliest", "--count", "1"], timeout: 30)
        #expect(tail.stdout.contains(#""kind":"allegro.approval""#), "\(tail.stdout)")
        #expect(tail.stdout.contains(#"\"verdict\":\"refused\""#) && tail.stdout.contains(#"\"check\":\"base64\""#), "\(tail.stdout)")
        #expect(tail.stdout.contains(#"\"nonce\":\"0123456789abcdef0123456789abcdef\""#), "which approval it was: \(tail.stdout)")
    }

    @Test func privateKeyMaterialIsRefusedAsTheTrustFileNamingIt() throws {
        let scratch = try AllegroBinary.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let signers = scratch.appendingPathComponent("allowed_signers")
        try "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n".write(to: signers, atomically: false, encoding: .utf8)
        let result = try AllegroBinary.run(["approval", "verify", "--allowed-signers", signers.path, "--signature", signers.path,
                                            "--statement", signers.path], timeout: 30)
        #expect(result.status == 2)
        #expect(result.stderr.contains("\(signers.path) holds private key material"), "\(result.stderr)")
    }
}
