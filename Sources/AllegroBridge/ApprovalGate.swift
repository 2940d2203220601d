import AllegroApproval
import AllegroLog
import AllegroPosix
import Foundation

/// Timmy's signed approvals for the bridge's gated commands (protocol/APPROVAL.md): the trusted
/// keys are read from the `allowed_signers` file (`gitea.` or `hermes.allowed_signers`, named by
/// `setting`) at every check (a key removed is refused at once),
/// nonces are kept in `bridge.data_dir/approvals.sqlite`, and every verdict, accepted or refused,
/// is logged and put on the stream as an `allegro.approval` record (session: the nonce).
struct ApprovalGate: Sendable {
    let allowedSignersPath: String
    /// The configuration key of `allowedSignersPath`, for messages.
    var setting = "gitea.allowed_signers"
    let nonces: SQLiteNonceStore
    let store: BridgeStore
    let publisher: OutboxPublisher
    let log: EventLog

    static var nowSeconds: Int64 { Int64(Clock.wallNanos / 1_000_000_000) }

    private func verifier() throws(CommandError) -> ApprovalVerifier {
        guard let data = FileManager.default.contents(atPath: allowedSignersPath) else {
            throw CommandError(status: 503, reason: "cannot read \(setting) \(allowedSignersPath)")
        }
        do {
            return ApprovalVerifier(allowedSigners: try AllowedSigners(text: Array(data), source: allowedSignersPath), nonces: nonces)
        } catch {
            throw CommandError(status: 503, reason: "\(setting) \(allowedSignersPath): \(error)")
        }
    }

    /// The approval of exactly `action`, its nonce consumed (or, `resuming` a journaled command,
    /// already its own). A refusal is a 403 naming the check.
    func approve<Action: GatedAction>(_ action: Action, statement: String, signature: String, resuming: Bool) throws(CommandError) -> Approved<Action> {
        let verifier = try verifier()
        let text = Array(statement.utf8), armored = Array(signature.utf8)
        do {
            let approved = resuming ? try verifier.resume(action, statement: text, signature: armored, atSeconds: Self.nowSeconds)
                : try verifier.approve(action, statement: text, signature: armored, atSeconds: Self.nowSeconds)
            if let verified = try? verifier.verify(statement: text, signature: armored, atSeconds: Self.nowSeconds) {
                tell(ApprovalEvent.accepted(verified))
            }
            return approved
        } catch {
            tell(ApprovalEvent.refused(error, statement: text))
            throw CommandError(status: 403, reason: "approval refused: \(error)")
        }
    }

    /// Right before the side effect: the approval against the clock, the trust file and the
    /// action as it is now.
    func recheck<Action: GatedAction>(_ approved: Approved<Action>, actionNow: Action) throws(CommandError) {
        do { try verifier().recheck(approved, actionNow: actionNow, atSeconds: Self.nowSeconds) } catch let error as ApprovalRefusal {
            tell(ApprovalEvent.refused(error, atExecutionOf: approved, actionNow: actionNow))
            throw CommandError(status: 403, reason: "approval refused at execution: \(error)")
        } catch let error as CommandError {
            throw error
        } catch {
            throw CommandError(status: 500, reason: "\(error)")
        }
    }

    private func tell(_ event: ApprovalEvent) {
        log.log(event.verdict == "accepted" ? .info : .warning, "approval_\(event.verdict)",
                ["action": event.action ?? "", "nonce": event.nonce ?? "", "reason": event.reason ?? ""])
        do {
            try store.enqueueRecords([(ApprovalEvent.kind, event.nonce ?? "", event.json)], nowMillis: Int64(Clock.wallNanos / 1_000_000))
            publisher.poke()
        } catch {
            log.log(.error, "approval_not_published", ["reason": "\(error)"])
        }
    }
}
