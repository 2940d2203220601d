import AllegroApproval
import Foundation
import Testing

/// The rules beyond the signature, with real ssh-keygen signatures and an injected clock: replay,
/// expiry at receipt and at execution, key rotation, a moved branch, key types, the statement's
/// canonical form, and a trust file that never holds private keys.
@Suite struct ApprovalRuleTests {
    let keygen: SSHKeygen
    let now: Int64 = 1_796_000_000  // 2026-11-30, a fixed clock
    let sha = String(repeating: "ab", count: 20)

    init() throws { keygen = try SSHKeygen() }

    private func signers(_ lines: [String]) throws -> AllowedSigners {
        try AllowedSigners(text: Array(lines.joined(separator: "\n").utf8), source: "allowed_signers")
    }

    private func line(_ key: (type: String, base64: String), principal: String = "timmy", options: String = "namespaces=\"allegro-approval\"") -> String {
        "\(principal) \(options) \(key.type) \(key.base64)"
    }

    private func refusal(_ body: () throws(ApprovalRefusal) -> Void) -> ApprovalRefusal? {
        do { try body() } catch { return error }
        return nil
    }

    @Test func aNonceIsAcceptedOnceEvenAcrossStoresOnDisk() throws {
        let timmy = try keygen.key("timmy")
        let text = statement(now: now)
        let signature = try keygen.sign(text, key: "timmy")
        let path = keygen.url("approvals.sqlite").path
        let verifier = ApprovalVerifier(allowedSigners: try signers([line(timmy)]), nonces: try SQLiteNonceStore(path: path))
        let action = CloseIssue(repo: "timmy/home", issue: 42)
        let approved = try verifier.approve(action, statement: text, signature: signature, atSeconds: now)
        #expect(approved.action == action && approved.signer == "timmy" && approved.keyFingerprint.hasPrefix("SHA256:"))
        let replay = refusal { () throws(ApprovalRefusal) in _ = try verifier.approve(action, statement: text, signature: signature, atSeconds: now + 1) }
        #expect(replay?.check == .nonce && replay?.reason.contains("used before") == true, "\(String(describing: replay))")
        // A new process with the same database remembers it.
        let later = ApprovalVerifier(allowedSigners: try signers([line(timmy)]), nonces: try SQLiteNonceStore(path: path))
        #expect(refusal { () throws(ApprovalRefusal) in _ = try later.approve(action, statement: text, signature: signature, atSeconds: now + 2) }?.check == .nonce)
    }

    @Test func aJournaledCommandResumesWithItsOwnNonceAndAFreshApprovalCannotSkipItsNonce() throws {
        let timmy = try keygen.key("timmy")
        let nonces = MemoryNonceStore()
        let verifier = ApprovalVerifier(allowedSigners: try signers([line(timmy)]), nonces: nonces)
        let action = CloseIssue(repo: "timmy/home", issue: 42)
        let text = statement(now: now)
        let signature = try keygen.sign(text, key: "timmy")
        // Resuming an approval whose nonce is not recorded consumes it, as approve would.
        let first = try verifier.resume(action, statement: text, signature: signature, atSeconds: now)
        #expect(try nonces.isUsed(first.nonce))
        // After a crash, the same command resumes: its nonce is already its own.
        let again = try verifier.resume(action, statement: text, signature: signature, atSeconds: now + 5)
        #expect(again.nonce == first.nonce)
        // approve still refuses it as a replay, and resume still checks the action and the clock.
        #expect(refusal { () throws(ApprovalRefusal) in _ = try verifier.approve(action, statement: text, signature: signature, atSeconds: now + 6) }?.check == .nonce)
        #expect(refusal { () throws(ApprovalRefusal) in
            _ = try verifier.resume(CloseIssue(repo: "timmy/home", issue: 43), statement: text, signature: signature, atSeconds: now + 7)
        }?.check == .action)
        #expect(refusal { () throws(ApprovalRefusal) in
            _ = try verifier.resume(action, statement: text, signature: signature, atSeconds: now + 3600)
        }?.check == .expiry)
    }

    @Test func aHermesApprovalIsOfOneRequestAndTheExactCommandItNames() throws {
        let timmy = try keygen.key("timmy")
        let hash = String(repeating: "0f", count: 32)
        let text = statement("hermes_approve", now: now, target: [("request", "hermes-run_0a1b-1"), ("command_sha256", hash)])
        let signature = try keygen.sign(text, key: "timmy")
        let verifier = ApprovalVerifier(allowedSigners: try signers([line(timmy)]), nonces: MemoryNonceStore())
        let other = refusal { () throws(ApprovalRefusal) in
            _ = try verifier.approve(HermesApproval(request: "hermes-run_0a1b-1", commandSHA256: String(repeating: "1f", count: 32)),
                                     statement: text, signature: signature, atSeconds: now)
        }
        #expect(other != nil, "another command is not approved")
        let approved = try verifier.approve(HermesApproval(request: "hermes-run_0a1b-1", commandSHA256: hash), statement: text, signature: signature,
                                            atSeconds: now)
        #expect(approved.action.commandSHA256 == hash)
        for (key, value) in [("request", "has space"), ("request", String(repeating: "r", count: 129)), ("command_sha256", String(hash.dropLast())),
                             ("command_sha256", hash.uppercased())] {
            let target = [("request", key == "request" ? value : "r-1"), ("command_sha256", key == "command_sha256" ? value : hash)]
            let bad = refusal { () throws(ApprovalRefusal) in _ = try ApprovalStatement(statement("hermes_approve", now: now, target: target)) }
            #expect(bad?.check == .statement && bad?.reason.hasPrefix(key) == true, "\(key)=\(value): \(String(describing: bad))")
        }
        let withRepo = refusal { () throws(ApprovalRefusal) in
            _ = try ApprovalStatement(statement("hermes_approve", now: now, target: [("repo", "timmy/home"), ("request", "r-1"), ("command_sha256", hash)]))
        }
        #expect(withRepo?.reason.contains("repo does not belong to action hermes_approve") == true, "\(String(describing: withRepo))")
    }

    @Test func expiryHoldsAtReceiptAndAgainAtExecution() throws {
        let timmy = try keygen.key("timmy")
        let verifier = ApprovalVerifier(allowedSigners: try signers([line(timmy)]), nonces: MemoryNonceStore())
        let action = CloseIssue(repo: "timmy/home", issue: 42)
        let short = statement(now: now, validFor: 60)
        let signature = try keygen.sign(short, key: "timmy")
        let late = refusal { () throws(ApprovalRefusal) in _ = try verifier.approve(action, statement: short, signature: signature, atSeconds: now + 60) }
        #expect(late?.check == .expiry && late?.reason.contains("expired at") == true)
        let approved = try verifier.approve(action, statement: short, signature: signature, atSeconds: now + 58)
        try verifier.recheck(approved, actionNow: action, atSeconds: now + 59)
        #expect(refusal { () throws(ApprovalRefusal) in try verifier.recheck(approved, actionNow: action, atSeconds: now + 61) }?.check == .expiry,
                "an approval that expires while it waits is refused when the action runs")
        let far = statement(now: now, validFor: 24 * 3600 + 1, nonce: String(repeating: "1", count: 32))
        let farSignature = try keygen.sign(far, key: "timmy")
        let farRefusal = refusal { () throws(ApprovalRefusal) in
            _ = try verifier.approve(action, statement: far, signature: farSignature, atSeconds: now)
        }
        #expect(farRefusal?.check == .expiry && farRefusal?.reason.contains("more than 24 h ahead") == true)
    }

    @Test func keysRotateByTheLinesOfTheTrustFile() throws {
        let old = try keygen.key("old"), new = try keygen.key("new")
        let text = statement(now: now)
        let byOld = try keygen.sign(text, key: "old"), byNew = try keygen.sign(text, key: "new")
        let both = ApprovalVerifier(allowedSigners: try signers([line(old, principal: "timmy-old"), line(new)]), nonces: nil)
        #expect(try both.verify(statement: text, signature: byOld, atSeconds: now).signer == "timmy-old")
        #expect(try both.verify(statement: text, signature: byNew, atSeconds: now).signer == "timmy")
        let rotated = ApprovalVerifier(allowedSigners: try signers([line(new)]), nonces: nil)
        #expect(refusal { () throws(ApprovalRefusal) in _ = try rotated.verify(statement: text, signature: byOld, atSeconds: now) }?.check == .signer)
        // valid-before is honoured: after it, the key is no longer trusted.
        let expiring = ApprovalVerifier(allowedSigners: try signers([line(new, options: "namespaces=\"allegro-approval\",valid-before=\"20261130Z\"")]),
                                        nonces: nil)
        #expect(refusal { () throws(ApprovalRefusal) in _ = try expiring.verify(statement: text, signature: byNew, atSeconds: now) }?.check == .signer)
        // A line with an option this reader does not know, or without the namespace, is not trusted.
        for options in ["namespaces=\"allegro-approval\",no-touch-required", "namespaces=\"git\"", "namespaces=\"*\""] {
            let untrusted = ApprovalVerifier(allowedSigners: try signers([line(new, options: options)]), nonces: nil)
            #expect(refusal { () throws(ApprovalRefusal) in _ = try untrusted.verify(statement: text, signature: byNew, atSeconds: now) }?.check == .signer,
                    "\(options)")
        }
    }

    @Test func aBranchThatMovedAfterTheApprovalIsNotApproved() throws {
        let timmy = try keygen.key("timmy")
        let target = [("repo", "timmy/home"), ("head", "feature/x"), ("head_sha", sha), ("base", "main")]
        let text = statement("create_pr", now: now, target: target)
        let signature = try keygen.sign(text, key: "timmy")
        let verifier = ApprovalVerifier(allowedSigners: try signers([line(timmy)]), nonces: MemoryNonceStore())
        let moved = CreatePullRequest(repo: "timmy/home", head: "feature/x", headSHA: String(repeating: "cd", count: 20), base: "main")
        let refused = refusal { () throws(ApprovalRefusal) in _ = try verifier.approve(moved, statement: text, signature: signature, atSeconds: now) }
        #expect(refused?.check == .action && refused?.reason.contains("head_sha") == true, "\(String(describing: refused))")
        let other = refusal { () throws(ApprovalRefusal) in
            _ = try verifier.approve(CloseIssue(repo: "timmy/home", issue: 1), statement: text, signature: signature, atSeconds: now)
        }
        #expect(other?.check == .action && other?.reason.contains("approves create_pr, not close_issue") == true)
        let exact = CreatePullRequest(repo: "timmy/home", head: "feature/x", headSHA: sha, base: "main")
        let approved = try verifier.approve(exact, statement: text, signature: signature, atSeconds: now)
        #expect(approved.action == exact)
        // Approved, then the branch moved before the call: the check at execution refuses it.
        let late = refusal { () throws(ApprovalRefusal) in try verifier.recheck(approved, actionNow: moved, atSeconds: now + 5) }
        #expect(late?.check == .action && late?.reason.contains("head_sha") == true)
        // And a key removed from the trust file in between is no longer trusted.
        let rotated = ApprovalVerifier(allowedSigners: try signers([]), nonces: MemoryNonceStore())
        #expect(refusal { () throws(ApprovalRefusal) in try rotated.recheck(approved, actionNow: exact, atSeconds: now + 5) }?.check == .signer)
    }

    @Test func rsaAndEcdsaKeysAreRefusedEvenWhenListed() throws {
        for type in ["rsa", "ecdsa"] {
            let key = try keygen.key(type, type: type)
            let text = statement(now: now)
            let verifier = ApprovalVerifier(allowedSigners: try signers([line(key)]), nonces: nil)
            let signature = try keygen.sign(text, key: type)
            let refused = refusal { () throws(ApprovalRefusal) in
                _ = try verifier.verify(statement: text, signature: signature, atSeconds: now)
            }
            #expect(refused?.check == .keyType && refused?.reason.contains("ssh-ed25519 keys only") == true, "\(type): \(String(describing: refused))")
        }
    }

    @Test func aStatementHasOneCanonicalFormAndEveryOtherIsRefusedWithItsReason() throws {
        let good = String(decoding: statement(now: now), as: UTF8.self)
        #expect(try ApprovalStatement(Array(good.utf8)).target == ["repo": "timmy/home", "issue": "42"])
        let cases: [(String, String)] = [
            (good.replacingOccurrences(of: "issue=42\n", with: "issue=42\nissue=42\n"), "issue appears twice"),
            (good.replacingOccurrences(of: "issue=42\n", with: ""), "issue is missing"),
            (good.replacingOccurrences(of: "repo=timmy/home\nissue=42\n", with: "issue=42\nrepo=timmy/home\n"), "out of order"),
            (good.replacingOccurrences(of: "issue=42\n", with: "issue=42\nhead=main\n"), "head does not belong to action close_issue"),
            (good.replacingOccurrences(of: "issue=42\n", with: "issue=42\ncolour=red\n"), "unknown key \"colour\""),
            (good.replacingOccurrences(of: "\n", with: "\r\n"), "a carriage return"),
            (good.replacingOccurrences(of: "issue=42", with: "issue=042"), "issue=042: expected a number"),
            (good.replacingOccurrences(of: "audience=allegro", with: "audience=gitea"), "not allegro"),
            (good.replacingOccurrences(of: "allegro-approval/v1", with: "allegro-approval/v2"), "line 1 is not allegro-approval/v1"),
            (String(good.dropLast()), "does not end with LF"),
            (good.replacingOccurrences(of: "action=close_issue", with: "action=delete_repo"), "unknown action"),
        ]
        for (text, reason) in cases {
            let refused = refusal { () throws(ApprovalRefusal) in _ = try ApprovalStatement(Array(text.utf8)) }
            #expect(refused?.reason.contains(reason) == true, "\(reason): \(String(describing: refused))")
        }
    }

    @Test func anOptionThatIsOnlyAnEqualsSignIsReadNotTrapped() throws {
        // Found by the fuzzer: `=` alone as an option once indexed an empty split.
        let signers = try AllowedSigners(text: Array("timmy namespaces=\"x\",= ssh-ed25519 AAAA\n".utf8), source: "fuzz")
        #expect(signers.signers.isEmpty && signers.skipped == 1)
    }

    @Test func aTrustFileWithPrivateKeyMaterialIsRefusedNamingTheFile() throws {
        _ = try keygen.key("secret")
        let privateKey = try String(contentsOf: keygen.url("secret"), encoding: .utf8)
        #expect(throws: AllowedSigners.Invalid.self) { try signers([privateKey]) }
        let error = #expect(throws: AllowedSigners.Invalid.self) { try signers(["# a comment", privateKey]) }
        #expect(error?.description.contains("allowed_signers holds private key material") == true, "\(String(describing: error))")
    }
}
