/// Why an approval was refused: the check that failed (in the order the verifier makes them,
/// protocol/APPROVAL.md) and a reason that says what was wrong. Every refusal is one of these;
/// no input reaches a trap.
public struct ApprovalRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Check: String, Sendable {
        case armor, base64, blob
        case keyType = "key_type"
        case namespace, reserved
        case hashAlgorithm = "hash_algorithm"
        case signer, signature, statement, audience, expiry, nonce, action
    }

    public let check: Check
    public let reason: String

    public init(_ check: Check, _ reason: String) {
        self.check = check
        self.reason = reason
    }

    public var description: String { "\(check.rawValue): \(reason)" }
}
