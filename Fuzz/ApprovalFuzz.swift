// libFuzzer entry point for the approval parsers (AllegroApproval's armor, base64, SSHSIG blob,
// statement and allowed_signers readers). Built by scripts/fuzz together with those sources as
// one module (the verifier, the nonce store, the event and the gated actions are left out: they
// parse nothing and need swift-crypto, GRDB or Foundation), with -sanitize=fuzzer,address.
//
// The first byte picks the parser, the rest is its input. A refusal is the expected outcome for
// almost every input; a trap, an overflow or a sanitizer report is the bug this looks for.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzApproval(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    var touched = 0
    switch data[0] % 4 {
    case 0:
        if let signature = try? SSHSignature(armored: input) {
            touched &+= signature.publicKey.count + signature.signature.count
            touched &+= SSHSignature.signedData(messageHash: signature.signature).count
        }
    case 1:
        if let statement = try? ApprovalStatement(input) {
            touched &+= statement.target.count + statement.nonce.count
            touched &+= UTCTimestamp.text(statement.notAfterSeconds).count
        }
    case 2:
        if let signers = try? AllowedSigners(text: input, source: "fuzz") {
            touched &+= signers.signers.count + signers.skipped
            touched &+= signers.signer(for: input, atSeconds: 0) == nil ? 0 : 1
        }
    default:
        if let decoded = try? Base64.decode(input) { touched &+= Base64.encode(decoded).count }
    }
    return touched == -1 ? 1 : 0
}
