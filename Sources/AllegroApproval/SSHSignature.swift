/// An OpenSSH signature (PROTOCOL.sshsig) as Allegro accepts it: armored, version 1, an
/// `ssh-ed25519` key and signature, namespace `allegro-approval`, reserved empty, hash `sha512`.
/// Parsing checks structure and these fixed values only; whether the key is trusted and the
/// signature valid is the verifier's work. Input is bounded (`maxArmorBytes`) before decoding.
public struct SSHSignature: Sendable, Equatable {
    public static let namespace = "allegro-approval"
    public static let maxArmorBytes = 8192
    static let begin = "-----BEGIN SSH SIGNATURE-----"
    static let end = "-----END SSH SIGNATURE-----"
    static let magic = Array("SSHSIG".utf8)

    /// The signer's Ed25519 public key (32 bytes) and its SSH wire blob.
    public let publicKey: [UInt8]
    public let publicKeyBlob: [UInt8]
    /// The Ed25519 signature (64 bytes).
    public let signature: [UInt8]

    public init(armored text: [UInt8]) throws(ApprovalRefusal) {
        guard text.count <= Self.maxArmorBytes else {
            throw ApprovalRefusal(.armor, "\(text.count) bytes; a signature is at most \(Self.maxArmorBytes)")
        }
        let blob = try Base64.decode(try Self.dearmor(text))
        var reader = SSHWireReader(blob)
        guard Array(try reader.raw(6, "magic")) == Self.magic else {
            throw ApprovalRefusal(.blob, "the magic is not SSHSIG")
        }
        let version = try reader.uint32("version")
        guard version == 1 else { throw ApprovalRefusal(.blob, "version \(version); only version 1 is known") }
        let keyBlob = Array(try reader.string("public key"))
        var key = SSHWireReader(keyBlob)
        let keyType = String(decoding: try key.string("public key type"), as: UTF8.self)
        guard keyType == "ssh-ed25519" else {
            throw ApprovalRefusal(.keyType, "a \(Self.printable(keyType)) key; approvals are signed with ssh-ed25519 keys only")
        }
        let keyBytes = Array(try key.string("public key"))
        guard keyBytes.count == 32, key.isAtEnd else {
            throw ApprovalRefusal(.blob, "an ssh-ed25519 public key is 32 bytes and nothing after them")
        }
        let namespace = String(decoding: try reader.string("namespace"), as: UTF8.self)
        guard namespace == Self.namespace else {
            throw ApprovalRefusal(.namespace, "signed for namespace \"\(Self.printable(namespace))\", not \(Self.namespace)")
        }
        guard try reader.string("reserved").isEmpty else { throw ApprovalRefusal(.reserved, "the reserved field is not empty") }
        let hash = String(decoding: try reader.string("hash algorithm"), as: UTF8.self)
        guard hash == "sha512" else {
            throw ApprovalRefusal(.hashAlgorithm, "hash \(Self.printable(hash)); approvals are signed over sha512")
        }
        var signed = SSHWireReader(Array(try reader.string("signature")))
        guard reader.isAtEnd else { throw ApprovalRefusal(.blob, "bytes after the signature") }
        let signatureType = String(decoding: try signed.string("signature type"), as: UTF8.self)
        guard signatureType == "ssh-ed25519" else {
            throw ApprovalRefusal(.keyType, "an \(Self.printable(signatureType)) signature from an ssh-ed25519 key")
        }
        let signatureBytes = Array(try signed.string("signature"))
        guard signatureBytes.count == 64, signed.isAtEnd else {
            throw ApprovalRefusal(.blob, "an ssh-ed25519 signature is 64 bytes and nothing after them")
        }
        publicKey = keyBytes
        publicKeyBlob = keyBlob
        signature = signatureBytes
    }

    /// What the signature covers (PROTOCOL.sshsig): the magic, then the namespace, the reserved
    /// field and the hash algorithm as SSH strings, then the message's SHA-512 as one.
    public static func signedData(messageHash: some Collection<UInt8>) -> [UInt8] {
        var data = magic
        appendSSHString(Array(namespace.utf8), to: &data)
        appendSSHString([UInt8](), to: &data)
        appendSSHString(Array("sha512".utf8), to: &data)
        appendSSHString(messageHash, to: &data)
        return data
    }

    /// The base64 text between the header and the footer, ASCII whitespace removed (OpenSSH's
    /// reading: text after the footer is ignored, as ssh-keygen ignores it; it is not signed).
    private static func dearmor(_ text: [UInt8]) throws(ApprovalRefusal) -> [UInt8] {
        let header = Array((begin + "\n").utf8), footer = Array(("\n" + end).utf8)
        guard text.starts(with: header) else { throw ApprovalRefusal(.armor, "it does not start with the line \(begin)") }
        let body = text[header.count...]
        guard let footerStart = body.firstRange(of: footer)?.lowerBound else {
            throw ApprovalRefusal(.armor, "no line \(end) after the base64")
        }
        let base64 = body[..<footerStart]
        if base64.contains(0) { throw ApprovalRefusal(.armor, "a NUL byte in the base64") }
        return base64.filter { ![0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D].contains($0) }
    }

    /// A name from the input, safe to put in a message: printable ASCII, at most 64 characters.
    static func printable(_ text: String) -> String {
        let kept = text.unicodeScalars.prefix(64).map { (0x20 ..< 0x7F).contains($0.value) ? Character($0) : "?" }
        return String(kept) + (text.unicodeScalars.count > 64 ? "..." : "")
    }
}
