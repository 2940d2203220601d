import Foundation

/// What Timmy is told about one approval, accepted or refused: the payload of an
/// `allegro.approval` record on the relay stream, and the fields of the log line.
public struct ApprovalEvent: Sendable, Equatable {
    public static let kind = "allegro.approval"

    public var verdict: String
    public var reason: String?
    public var check: String?
    public var action: String?
    public var target: [String: String] = [:]
    public var nonce: String?
    public var notAfter: String?
    public var signer: String?
    public var keyFingerprint: String?

    public static func accepted(_ verified: ApprovalVerifier.Verified) -> ApprovalEvent {
        let statement = verified.statement
        return ApprovalEvent(verdict: "accepted", action: statement.action, target: statement.target, nonce: statement.nonce,
                             notAfter: statement.notAfter, signer: verified.signer, keyFingerprint: verified.keyFingerprint)
    }

    /// A refusal; what could be read of the statement (its action, target and nonce) goes with
    /// it, so Timmy can tell which of his approvals it was.
    public static func refused(_ refusal: ApprovalRefusal, statement text: [UInt8]) -> ApprovalEvent {
        var event = ApprovalEvent(verdict: "refused", reason: refusal.reason, check: refusal.check.rawValue)
        if let statement = try? ApprovalStatement(text) {
            event.action = statement.action
            event.target = statement.target
            event.nonce = statement.nonce
            event.notAfter = statement.notAfter
        }
        return event
    }

    /// A refusal right before the side effect (the approval was accepted on receipt): the
    /// action and target as they are now, the approval's nonce.
    public static func refused<Action: GatedAction>(_ refusal: ApprovalRefusal, atExecutionOf approved: Approved<Action>,
                                                    actionNow: Action) -> ApprovalEvent {
        ApprovalEvent(verdict: "refused", reason: refusal.reason, check: refusal.check.rawValue, action: Action.approvalName,
                      target: actionNow.approvalTarget, nonce: approved.nonce, signer: approved.signer, keyFingerprint: approved.keyFingerprint)
    }

    /// One JSON object, keys sorted.
    public var json: String {
        var object: [String: Any] = ["verdict": verdict]
        for (key, value) in [("reason", reason), ("check", check), ("action", action), ("nonce", nonce), ("not_after", notAfter),
                             ("signer", signer), ("key_fingerprint", keyFingerprint)] {
            if let value { object[key] = value }
        }
        if !target.isEmpty { object["target"] = target }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return #"{"verdict":"\#(verdict)"}"#
        }
        return String(decoding: data, as: UTF8.self)
    }
}
