import AllegroApproval
import AllegroClient
import AllegroPosix
import AllegroWire
import ArgumentParser
import Foundation

/// `allegro approval`: Timmy's signed approvals, by hand.
struct ApprovalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approval",
        abstract: "Check Timmy's signed approvals (protocol/APPROVAL.md).",
        subcommands: [Verify.self]
    )
}

/// `allegro approval verify`: one statement and its signature, checked as the bridge would.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check one signed approval: exit 0 with its fields, or 1 with the reason it was refused.",
        discussion: """
        Checks the signature (OpenSSH SSHSIG, ssh-ed25519, namespace allegro-approval, sha512) \\
        against the keys of an allowed_signers file, then the statement's syntax, audience and \\
        expiry. With --action and the target flags it also checks that the statement approves \\
        exactly that action. The nonce store is consulted (and the nonce used up) only with \\
        --data DIR (DIR/approvals.sqlite). With --publish HOST:PORT the verdict also goes to that \\
        relay as an allegro.approval record, as the bridge publishes it for Timmy.
        """
    )

    @Option(name: .customLong("allowed-signers"), help: "OpenSSH allowed_signers file with Timmy's public key(s).") var allowedSigners: String
    @Option(help: "The armored signature (ssh-keygen -Y sign writes STATEMENT.sig).") var signature: String
    @Option(help: "The statement file that was signed.") var statement: String
    @Option(help: "The action the approval must be for: create_pr, close_issue, merge_pr or hermes_approve.") var action: String?
    @Option(help: "Target repository, owner/name.") var repo: String?
    @Option(help: "Target issue number (close_issue).") var issue: Int64?
    @Option(help: "Target pull request number (merge_pr).") var pull: Int64?
    @Option(help: "Head branch (create_pr, merge_pr).") var head: String?
    @Option(name: .customLong("head-sha"), help: "Head commit id (create_pr, merge_pr).") var headSHA: String?
    @Option(help: "Base branch (create_pr, merge_pr).") var base: String?
    @Option(help: "The Allegro Request that forwarded Hermes' approval prompt (hermes_approve).") var request: String?
    @Option(name: .customLong("command-sha256"), help: "SHA-256 of the command Hermes asked to run, lowercase hex (hermes_approve).")
    var commandSHA256: String?
    @Option(help: "Data directory whose approvals.sqlite keeps used nonces.") var data: String?
    @Option(help: "Check as of this time, YYYY-MM-DDTHH:MM:SSZ (default: now).") var now: String?
    @Option(help: "Also publish the verdict to this relay, HOST:PORT (token: $ALLEGRO_PRODUCER_TOKEN).") var publish: String?

    func run() throws {
        ProcessSetup.resetSignals()
        let clock: Int64
        if let now {
            guard let parsed = UTCTimestamp.seconds(now) else { throw usage("--now must be YYYY-MM-DDTHH:MM:SSZ, not \(now)") }
            clock = parsed
        } else {
            clock = Int64(Clock.wallNanos / 1_000_000_000)
        }
        let signers: AllowedSigners
        do { signers = try AllowedSigners(text: try read(allowedSigners), source: allowedSigners) } catch let invalid as AllowedSigners.Invalid {
            throw usage(invalid.description)
        }
        let nonces: (any NonceStore)?
        if let data {
            do {
                try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
                nonces = try SQLiteNonceStore(path: data + "/approvals.sqlite")
            } catch { throw usage("cannot open the nonce store in \(data): \(error)") }
        } else {
            nonces = MemoryNonceStore()  // a check by hand: nothing is kept
        }
        let statementBytes = try read(statement), signatureBytes = try read(signature)
        let verifier = ApprovalVerifier(allowedSigners: signers, nonces: nonces)
        let event: ApprovalEvent
        do {
            let verified = try verifier.verify(statement: statementBytes, signature: signatureBytes, atSeconds: clock)
            if let action {
                try approve(action, verifier, statementBytes, signatureBytes, clock)
            } else if data != nil {
                // No action to hold it to, but the nonce is still used up: a by-hand check with
                // --data stands in for the bridge.
                guard try nonces?.consume(verified.statement.nonce, notAfterSeconds: verified.statement.notAfterSeconds,
                                           action: verified.statement.action, atSeconds: clock) == true else {
                    throw ApprovalRefusal(.nonce, "nonce \(verified.statement.nonce) was used before (a replay)")
                }
            }
            event = .accepted(verified)
        } catch let refusal as ApprovalRefusal {
            event = .refused(refusal, statement: statementBytes)
        }
        if let publish { try publishEvent(event, to: publish) }
        if event.verdict == "accepted" {
            StandardStreams.output(fieldsJSON(event))
        } else {
            StandardStreams.error("allegro approval verify: refused: \(event.check ?? ""): \(event.reason ?? "")")
            throw ExitCode.failure
        }
    }

    /// Holds the approval to the action the flags describe.
    private func approve(_ name: String, _ verifier: ApprovalVerifier, _ statement: [UInt8], _ signature: [UInt8],
                         _ now: Int64) throws {
        func need<T>(_ value: T?, _ flag: String) throws -> T {
            guard let value else { throw usage("--action \(name) needs \(flag)") }
            return value
        }
        switch name {
        case CreatePullRequest.approvalName:
            _ = try verifier.approve(CreatePullRequest(repo: need(repo, "--repo"), head: need(head, "--head"), headSHA: need(headSHA, "--head-sha"),
                                                       base: need(base, "--base")), statement: statement, signature: signature, atSeconds: now)
        case CloseIssue.approvalName:
            _ = try verifier.approve(CloseIssue(repo: need(repo, "--repo"), issue: need(issue, "--issue")),
                                     statement: statement, signature: signature, atSeconds: now)
        case MergePullRequest.approvalName:
            _ = try verifier.approve(MergePullRequest(repo: need(repo, "--repo"), pull: need(pull, "--pull"), head: need(head, "--head"),
                                                      headSHA: need(headSHA, "--head-sha"), base: need(base, "--base")),
                                     statement: statement, signature: signature, atSeconds: now)
        case HermesApproval.approvalName:
            _ = try verifier.approve(HermesApproval(request: need(request, "--request"), commandSHA256: need(commandSHA256, "--command-sha256")),
                                     statement: statement, signature: signature, atSeconds: now)
        default:
            throw usage("--action must be create_pr, close_issue, merge_pr or hermes_approve, not \(name)")
        }
    }

    private func publishEvent(_ event: ApprovalEvent, to relay: String) throws {
        let address: SocketAddress
        do { address = try SocketAddress(parsing: relay) } catch { throw usage("--publish: \(error.description)") }
        var options = ProducerOptions(relays: [address], producerID: "allegro-approval-\(ProcessInfo.processInfo.processIdentifier)")
        options.token = ProcessInfo.processInfo.environment["ALLEGRO_PRODUCER_TOKEN"] ?? ""
        options.firstSequence = Clock.wallNanos / 1000
        options.reconnectForMillis = 10_000
        let producer = try Producer(options)
        var payload = event.json
        try payload.withUTF8 { bytes in
            _ = try producer.publish(session: event.nonce ?? "", kind: ApprovalEvent.kind, contentType: "application/json",
                                     payload: UnsafeRawBufferPointer(bytes))
        }
        try producer.close()
    }

    /// The verified statement's fields, as written, with the signer and the key's fingerprint.
    private func fieldsJSON(_ event: ApprovalEvent) -> String {
        var json = JSONObject()
        json.add("action", event.action ?? "")
        for key in ApprovalStatement.keyOrder {
            if let value = event.target[key] { json.add(key, value) }
        }
        json.add("not_after", event.notAfter ?? "")
        json.add("nonce", event.nonce ?? "")
        json.add("audience", ApprovalStatement.audience)
        json.add("signer", event.signer ?? "")
        json.add("key_fingerprint", event.keyFingerprint ?? "")
        return json.text
    }

    private func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw usage("cannot read \(path)") }
        guard data.count <= 1 << 20 else { throw usage("\(path) is \(data.count) bytes; this is not an approval file") }
        return Array(data)
    }

    private func usage(_ message: String) -> ExitCode {
        StandardStreams.error("allegro approval verify: \(message)")
        return ExitCode(2)
    }
}
