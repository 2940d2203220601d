import Crypto

/// Checks Timmy's approvals (protocol/APPROVAL.md) and is the only maker of `Approved<Action>`.
/// `verify` checks one signed statement against the allowed signers and the clock, in the
/// documented order; `approve` also consumes its nonce and holds it to the action about to run.
/// Nothing here holds a private key: the trusted keys are public ones from `allowed_signers`.
public struct ApprovalVerifier: Sendable {
    /// How far ahead `not_after` may be: an approval is for today, not for later.
    public static let maxValiditySeconds: Int64 = 24 * 3600

    public let allowedSigners: AllowedSigners
    public let nonces: (any NonceStore)?

    public init(allowedSigners: AllowedSigners, nonces: (any NonceStore)?) {
        self.allowedSigners = allowedSigners
        self.nonces = nonces
    }

    /// A statement whose signature, signer, syntax, audience and validity hold at `now`.
    public struct Verified: Sendable {
        public let statement: ApprovalStatement
        public let signer: String
        public let keyFingerprint: String
    }

    /// Every check but the nonce and the action: armor, structure, key type, namespace, hash,
    /// allowed signer, signature, statement syntax, audience, expiry.
    public func verify(statement text: [UInt8], signature armored: [UInt8], atSeconds now: Int64) throws(ApprovalRefusal) -> Verified {
        let (signer, fingerprint) = try checkSignature(message: text, signature: armored, atSeconds: now)
        let statement = try ApprovalStatement(text)
        guard statement.notAfterSeconds > now else {
            throw ApprovalRefusal(.expiry, "expired at \(statement.notAfter)")
        }
        guard statement.notAfterSeconds - now <= Self.maxValiditySeconds else {
            throw ApprovalRefusal(.expiry, "not_after \(statement.notAfter) is more than 24 h ahead")
        }
        return Verified(statement: statement, signer: signer, keyFingerprint: fingerprint)
    }

    /// The signature layer alone, what `ssh-keygen -Y verify -n allegro-approval` decides: a
    /// well-formed SSHSIG by an allowed signer (valid at `now`) over exactly `message`. Returns
    /// the signer's principals and the key's fingerprint.
    public func checkSignature(message: [UInt8], signature armored: [UInt8],
                               atSeconds now: Int64) throws(ApprovalRefusal) -> (signer: String, fingerprint: String) {
        let signature = try SSHSignature(armored: armored)
        let fingerprint = Self.fingerprint(signature.publicKeyBlob)
        guard let signer = allowedSigners.signer(for: signature.publicKey, atSeconds: now) else {
            throw ApprovalRefusal(.signer, "key \(fingerprint) is not an allowed signer for \(SSHSignature.namespace) (now)")
        }
        let signed = SSHSignature.signedData(messageHash: Array(SHA512.hash(data: message)))
        let valid: Bool
        do {
            valid = try Curve25519.Signing.PublicKey(rawRepresentation: signature.publicKey)
                .isValidSignature(signature.signature, for: signed)
        } catch {
            throw ApprovalRefusal(.signature, "the public key cannot be used: \(error)")
        }
        guard valid else { throw ApprovalRefusal(.signature, "the signature does not match the statement and key \(fingerprint)") }
        return (signer.principals.joined(separator: ","), fingerprint)
    }

    /// An approval of exactly `action`: `verify`, then every target field equal to the action's,
    /// then the nonce consumed (once ever). The result is what gated calls take.
    public func approve<Action: GatedAction>(_ action: Action, statement text: [UInt8], signature: [UInt8],
                                             atSeconds now: Int64) throws(ApprovalRefusal) -> Approved<Action> {
        let verified = try verify(statement: text, signature: signature, atSeconds: now)
        try Self.check(verified.statement, approves: action)
        guard let nonces else { throw ApprovalRefusal(.nonce, "no nonce store: an approval cannot be used without one") }
        let statement = verified.statement
        let fresh: Bool
        do { fresh = try nonces.consume(statement.nonce, notAfterSeconds: statement.notAfterSeconds, action: statement.action, atSeconds: now) } catch {
            throw ApprovalRefusal(.nonce, "the nonce store failed: \(error)")
        }
        guard fresh else { throw ApprovalRefusal(.nonce, "nonce \(statement.nonce) was used before (a replay)") }
        return Approved(action: action, verified: verified, signature: signature)
    }

    /// For a command journaled with this approval and cut short by a crash after the approval
    /// was accepted: `verify` and the action check as `approve` does, with the nonce already
    /// recorded (by that command) rather than consumed now. A nonce not yet recorded is consumed
    /// as `approve` would; a fresh approval can never skip its nonce this way.
    public func resume<Action: GatedAction>(_ action: Action, statement text: [UInt8], signature: [UInt8],
                                            atSeconds now: Int64) throws(ApprovalRefusal) -> Approved<Action> {
        let verified = try verify(statement: text, signature: signature, atSeconds: now)
        try Self.check(verified.statement, approves: action)
        guard let nonces else { throw ApprovalRefusal(.nonce, "no nonce store: an approval cannot be used without one") }
        let used: Bool
        do { used = try nonces.isUsed(verified.statement.nonce) } catch {
            throw ApprovalRefusal(.nonce, "the nonce store failed: \(error)")
        }
        guard used else { return try approve(action, statement: text, signature: signature, atSeconds: now) }
        return Approved(action: action, verified: verified, signature: signature)
    }

    /// The check right before the side effect: the approval again against this clock and trust
    /// file (a key removed since, an expiry passed while it waited), and against the action as it
    /// is now, read from the forge (a head that moved). Its nonce is already its own.
    public func recheck<Action: GatedAction>(_ approved: Approved<Action>, actionNow: Action,
                                             atSeconds now: Int64) throws(ApprovalRefusal) {
        let verified = try verify(statement: approved.statement, signature: approved.signature, atSeconds: now)
        try Self.check(verified.statement, approves: actionNow)
    }

    /// Step 14: the statement approves this action, every target field equal.
    static func check<Action: GatedAction>(_ statement: ApprovalStatement, approves action: Action) throws(ApprovalRefusal) {
        guard statement.action == Action.approvalName else {
            throw ApprovalRefusal(.action, "the statement approves \(statement.action), not \(Action.approvalName)")
        }
        let wanted = action.approvalTarget
        for key in ApprovalStatement.keyOrder where wanted[key] != nil || statement.target[key] != nil {
            guard wanted[key] == statement.target[key] else {
                throw ApprovalRefusal(.action, "\(key) is \(statement.target[key] ?? "absent") in the statement but "
                                      + "\(wanted[key].map(SSHSignature.printable) ?? "absent") in the action")
            }
        }
    }

    /// OpenSSH's fingerprint of a public key blob: `SHA256:` and unpadded base64.
    public static func fingerprint(_ blob: [UInt8]) -> String {
        var text = Base64.encode(Array(SHA256.hash(data: blob)))
        while text.hasSuffix("=") { text.removeLast() }
        return "SHA256:" + text
    }
}
