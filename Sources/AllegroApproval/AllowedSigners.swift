/// The keys Allegro trusts for approvals, from an OpenSSH `allowed_signers` file (ssh-keygen(1),
/// ALLOWED SIGNERS): `principals [options] keytype base64-key [comment]` per line. Only
/// `ssh-ed25519` lines whose `namespaces="..."` option lists `allegro-approval` are trusted;
/// `cert-authority` lines, lines with options it does not know and other key types are skipped
/// (and counted); `valid-after <= now <= valid-before` is honoured (times read as UTC). A file holding private key material is refused:
/// Allegro never holds a private key of Timmy's.
public struct AllowedSigners: Sendable {
    public struct Signer: Sendable, Equatable {
        public let principals: [String]
        public let publicKey: [UInt8]
        public let validAfterSeconds: Int64?
        public let validBeforeSeconds: Int64?
    }

    public static let maxBytes = 1 << 20
    public let signers: [Signer]
    /// Lines that name a key but are not trusted for approvals (another key type or namespace).
    public let skipped: Int

    /// A problem with the file itself, naming the line.
    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public init(text: [UInt8], source: String) throws(Invalid) {
        guard text.count <= Self.maxBytes else { throw Invalid(description: "\(source): \(text.count) bytes; at most \(Self.maxBytes)") }
        let content = String(decoding: text, as: UTF8.self)
        if PrivateKeyMaterial.found(in: content) {
            throw Invalid(description: "\(source) holds private key material; give Allegro only public keys (an allowed_signers file)")
        }
        var signers: [Signer] = [], skipped = 0
        for (index, raw) in content.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = Self.fields(line)
            guard fields.count >= 3 else { throw Invalid(description: "\(source) line \(index + 1): expected principals, [options,] key type and key") }
            // Options are present when the second field is not a key type.
            let hasOptions = !Self.isKeyType(fields[1])
            let options = hasOptions ? Self.options(fields[1]) : [:]
            let keyIndex = hasOptions ? 2 : 1
            guard fields.count > keyIndex + 1 else { throw Invalid(description: "\(source) line \(index + 1): no key after the key type") }
            let namespaces = options["namespaces"]?.split(separator: ",").map(String.init) ?? []
            // Never on a guess: an option this reader does not know leaves the line untrusted.
            let known = Set(["namespaces", "valid-after", "valid-before", "cert-authority"])
            guard fields[keyIndex] == "ssh-ed25519", options["cert-authority"] == nil, namespaces.contains(SSHSignature.namespace),
                  options.keys.allSatisfy(known.contains) else {
                skipped += 1
                continue
            }
            let blob: [UInt8]
            do { blob = try Base64.decode(Array(fields[keyIndex + 1].utf8)) } catch {
                throw Invalid(description: "\(source) line \(index + 1): the key is not base64 (\(error.reason))")
            }
            var reader = SSHWireReader(blob)
            guard let type = try? reader.string("key type"), String(decoding: type, as: UTF8.self) == "ssh-ed25519",
                  let key = try? reader.string("key"), key.count == 32, reader.isAtEnd else {
                throw Invalid(description: "\(source) line \(index + 1): not an ssh-ed25519 public key")
            }
            func time(_ name: String) throws(Invalid) -> Int64? {
                guard let text = options[name] else { return nil }
                guard let seconds = Self.signerTime(text) else {
                    throw Invalid(description: "\(source) line \(index + 1): \(name)=\(text) is not YYYYMMDD[HHMM[SS]][Z]")
                }
                return seconds
            }
            signers.append(Signer(principals: fields[0].split(separator: ",").map(String.init), publicKey: Array(key),
                                  validAfterSeconds: try time("valid-after"), validBeforeSeconds: try time("valid-before")))
        }
        self.signers = signers
        self.skipped = skipped
    }

    /// The signer holding `publicKey` and valid at `nowSeconds`, if any.
    public func signer(for publicKey: [UInt8], atSeconds now: Int64) -> Signer? {
        signers.first { signer in
            signer.publicKey == publicKey && (signer.validAfterSeconds.map { now >= $0 } ?? true)
                && (signer.validBeforeSeconds.map { now <= $0 } ?? true)
        }
    }

    private static func isKeyType(_ field: String) -> Bool {
        field.hasPrefix("ssh-") || field.hasPrefix("ecdsa-") || field.hasPrefix("sk-") || field.hasPrefix("rsa-")
    }

    /// Splits on blanks, keeping a quoted part (options such as namespaces="a,b") in one field.
    private static func fields(_ line: Substring) -> [String] {
        var fields: [String] = [], current = "", quoted = false
        for character in line {
            if character == "\"" { quoted.toggle() }
            if (character == " " || character == "\t") && !quoted {
                if !current.isEmpty { fields.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty { fields.append(current) }
        return fields
    }

    /// `name` or `name="value"` options, comma-separated (commas inside quotes belong to the value).
    private static func options(_ field: String) -> [String: String] {
        var options: [String: String] = [:], current = "", quoted = false
        func add(_ option: String) {
            guard !option.isEmpty else { return }
            guard let equals = option.firstIndex(of: "=") else {
                options[option.lowercased()] = ""
                return
            }
            options[option[..<equals].lowercased()] = option[option.index(after: equals)...].trimmingCharacters(in: "\"")
        }
        for character in field {
            if character == "\"" { quoted.toggle() }
            if character == "," && !quoted {
                add(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        add(current)
        return options
    }

    /// `YYYYMMDD[HHMM[SS]][Z]`, read as UTC.
    static func signerTime(_ text: String) -> Int64? {
        let digits = text.hasSuffix("Z") || text.hasSuffix("z") ? String(text.dropLast()) : text
        guard [8, 12, 14].contains(digits.count), digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        let padded = Array(digits + String(repeating: "0", count: 14 - digits.count))
        let iso = "\(String(padded[0 ..< 4]))-\(String(padded[4 ..< 6]))-\(String(padded[6 ..< 8]))T"
            + "\(String(padded[8 ..< 10])):\(String(padded[10 ..< 12])):\(String(padded[12 ..< 14]))Z"
        return UTCTimestamp.seconds(iso)
    }
}

/// Private key material of any kind (OpenSSH, PEM: RSA, EC, PKCS#8, encrypted): Allegro's
/// configuration refuses it wherever it appears, naming where.
public enum PrivateKeyMaterial {
    public static func found(in text: String) -> Bool {
        text.contains("PRIVATE KEY-----") || text.contains("-----BEGIN OPENSSH PRIVATE KEY")
    }
}

private extension Substring {
    func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" || first == "\r" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" || last == "\r" { result = result.dropLast() }
        return result
    }

    func trimmingCharacters(in character: Character) -> String {
        var result = self
        while result.first == character { result = result.dropFirst() }
        while result.last == character { result = result.dropLast() }
        return String(result)
    }
}
