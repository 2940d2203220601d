import Crypto

/// Bytes as lowercase hex, two digits each: SHA-256 digests (record versions, key hashes, command
/// hashes) and random key material.
enum Hex {
    static func lower(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// The SHA-256 of the text's UTF-8 bytes.
    static func sha256(_ text: String) -> String {
        lower(SHA256.hash(data: Array(text.utf8)))
    }
}
