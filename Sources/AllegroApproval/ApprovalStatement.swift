/// Timmy's approval statement (protocol/APPROVAL.md): canonical ASCII text, LF line ends, first
/// line `allegro-approval/v1`, then `key=value` lines in one global order, each present exactly
/// when the action needs it. There is one way to write a given approval, so the signed bytes and
/// the fields can never be read two ways. Parsing checks syntax only (expiry, nonce and the
/// action are the verifier's); every refusal names the line and what was wrong.
public struct ApprovalStatement: Sendable, Equatable {
    public static let maxBytes = 4096
    public static let header = "allegro-approval/v1"
    public static let audience = "allegro"
    /// Every key, in the order a statement lists them.
    public static let keyOrder = ["action", "repo", "issue", "pull", "head", "head_sha", "base", "request", "command_sha256",
                                  "not_after", "nonce", "audience"]
    /// Each action's target keys (between `action` and `not_after`).
    public static let targetKeys: [String: [String]] = [
        "create_pr": ["repo", "head", "head_sha", "base"],
        "close_issue": ["repo", "issue"],
        "merge_pr": ["repo", "pull", "head", "head_sha", "base"],
        "hermes_approve": ["request", "command_sha256"],
    ]

    /// The exact bytes that were signed.
    public let text: [UInt8]
    public let action: String
    /// The target fields (`repo`, `issue`, ...), as written.
    public let target: [String: String]
    /// `not_after` in seconds since the Unix epoch.
    public let notAfterSeconds: Int64
    public let notAfter: String
    public let nonce: String

    public init(_ text: [UInt8]) throws(ApprovalRefusal) {
        guard text.count <= Self.maxBytes else {
            throw ApprovalRefusal(.statement, "\(text.count) bytes; a statement is at most \(Self.maxBytes)")
        }
        for (offset, byte) in text.enumerated() where byte != 0x0A && !(0x20 ... 0x7E).contains(byte) {
            throw ApprovalRefusal(.statement, byte == 0x0D
                ? "a carriage return at byte \(offset + 1): lines end with LF alone"
                : "byte \(offset + 1) (0x\(String(byte, radix: 16))) is not printable ASCII")
        }
        guard text.last == 0x0A else { throw ApprovalRefusal(.statement, "the last line does not end with LF") }
        let lines = text.dropLast().split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard lines.first == Self.header else { throw ApprovalRefusal(.statement, "line 1 is not \(Self.header)") }
        var fields: [(key: String, value: String)] = []
        for (index, line) in lines.enumerated().dropFirst() {
            guard let equals = line.firstIndex(of: "=") else {
                throw ApprovalRefusal(.statement, line.isEmpty ? "line \(index + 1) is empty" : "line \(index + 1) is not key=value")
            }
            fields.append((String(line[..<equals]), String(line[line.index(after: equals)...])))
        }
        guard let first = fields.first, first.key == "action" else { throw ApprovalRefusal(.statement, "line 2 is not action=...") }
        guard let targets = Self.targetKeys[first.value] else {
            throw ApprovalRefusal(.statement, "unknown action \"\(SSHSignature.printable(first.value))\"; known: "
                                  + Self.targetKeys.keys.sorted().joined(separator: ", "))
        }
        let expected = ["action"] + targets + ["not_after", "nonce", "audience"]
        let keys = fields.map(\.key)
        if keys != expected { throw ApprovalRefusal(.statement, Self.keyProblem(keys, expected: expected, action: first.value)) }
        var values: [String: String] = [:]
        for (key, value) in fields {
            if let problem = Self.valueProblem(key, value) {
                throw ApprovalRefusal(.statement, "\(key)=\(SSHSignature.printable(value)): \(problem)")
            }
            values[key] = value
        }
        guard values["audience"] == Self.audience else {
            throw ApprovalRefusal(.audience, "the statement is for \"\(SSHSignature.printable(values["audience"] ?? ""))\", not \(Self.audience)")
        }
        guard let notAfter = values["not_after"], let seconds = UTCTimestamp.seconds(notAfter) else {
            throw ApprovalRefusal(.statement, "not_after is not a date and time YYYY-MM-DDTHH:MM:SSZ")
        }
        self.text = text
        action = first.value
        target = values.filter { targets.contains($0.key) }
        notAfterSeconds = seconds
        self.notAfter = notAfter
        nonce = values["nonce"] ?? ""
    }

    /// Says how `keys` differ from `expected`: the first key missing, extra, repeated or out of order.
    static func keyProblem(_ keys: [String], expected: [String], action: String) -> String {
        var seen = Set<String>()
        for key in keys {
            if !seen.insert(key).inserted { return "\(key) appears twice" }
            if !Self.keyOrder.contains(key) { return "unknown key \"\(SSHSignature.printable(key))\"" }
            if !expected.contains(key) { return "\(key) does not belong to action \(action)" }
        }
        if let missing = expected.first(where: { !seen.contains($0) }) { return "\(missing) is missing" }
        for (key, wanted) in zip(keys, expected) where key != wanted {
            return "\(key) is out of order: the keys go \(expected.joined(separator: ", "))"
        }
        return "the keys go \(expected.joined(separator: ", "))"
    }

    /// What is wrong with `value` for `key`, or nil.
    static func valueProblem(_ key: String, _ value: String) -> String? {
        let bytes = Array(value.utf8)
        switch key {
        case "action": return nil  // checked against the known actions
        case "repo":
            let parts = value.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ part in
                (1 ... 100).contains(part.count) && part.first != "."
                    && part.utf8.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
            }) else { return "expected owner/name, each 1 to 100 of A-Z a-z 0-9 . _ - (not starting with .)" }
            return nil
        case "issue", "pull":
            guard let number = Int64(value), number >= 1, String(number) == value else {
                return "expected a number from 1 to \(Int64.max), without sign or leading zeros"
            }
            return nil
        case "head", "base": return branchProblem(bytes)
        case "head_sha":
            guard bytes.count == 40 || bytes.count == 64, bytes.allSatisfy(isLowerHex) else {
                return "expected 40 or 64 lowercase hex digits (a commit id)"
            }
            return nil
        case "request":
            guard (1 ... 128).contains(bytes.count), bytes.allSatisfy({
                isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "-")
            }) else { return "expected a request id: 1 to 128 of A-Z a-z 0-9 . _ : -" }
            return nil
        case "command_sha256":
            guard bytes.count == 64, bytes.allSatisfy(isLowerHex) else { return "expected 64 lowercase hex digits (the command's SHA-256)" }
            return nil
        case "not_after": return UTCTimestamp.seconds(value) == nil ? "expected YYYY-MM-DDTHH:MM:SSZ (UTC), a real date" : nil
        case "nonce":
            guard bytes.count == 32, bytes.allSatisfy(isLowerHex) else { return "expected 32 lowercase hex digits (128 random bits)" }
            return nil
        case "audience": return nil  // checked on its own, with its own reason
        default: return "unknown key"
        }
    }

    /// git check-ref-format's rules for a branch name, on printable ASCII.
    static func branchProblem(_ bytes: [UInt8]) -> String? {
        let forbidden = Array("~^:?*[\\".utf8)
        guard (1 ... 255).contains(bytes.count), bytes.allSatisfy({ (0x21 ... 0x7E).contains($0) && !forbidden.contains($0) }) else {
            return "expected a branch name: 1 to 255 printable characters, no spaces or any of ~^:?*[\\"
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.contains("..") || text.contains("//") || text.contains("@{") || text.contains("/.") { return "not a valid branch name" }
        if text.hasPrefix("/") || text.hasPrefix(".") || text.hasSuffix("/") || text.hasSuffix(".") || text.hasSuffix(".lock") {
            return "not a valid branch name (it starts or ends with / or ., or ends with .lock)"
        }
        return nil
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a") ... UInt8(ascii: "f")).contains(byte)
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a") ... UInt8(ascii: "z")).contains(byte)
            || (UInt8(ascii: "A") ... UInt8(ascii: "Z")).contains(byte)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` to seconds since the Unix epoch, and back: a real calendar date
/// (proleptic Gregorian, years 1970 ... 9999), UTC only, no fraction, no offset.
public enum UTCTimestamp {
    public static func seconds(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count == 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
              bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"), bytes[19] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0 ..< 4), let month = number(5 ..< 7), let day = number(8 ..< 10),
              let hour = number(11 ..< 13), let minute = number(14 ..< 16), let second = number(17 ..< 19),
              year >= 1970, (1 ... 12).contains(month), hour < 24, minute < 60, second < 60 else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let lengths = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1 ... lengths[month - 1]).contains(day) else { return nil }
        return Int64(daysSinceEpoch(year: year, month: month, day: day)) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }

    public static func text(_ seconds: Int64) -> String {
        let days = Int(seconds.dividedRoundingDown(by: 86_400)), rest = Int(seconds - Int64(days) * 86_400)
        let (year, month, day) = civil(daysSinceEpoch: days)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let yearText = String(repeating: "0", count: max(0, 4 - String(year).count)) + String(year)
        return "\(yearText)-\(two(month))-\(two(day))T\(two(rest / 3600)):\(two(rest / 60 % 60)):\(two(rest % 60))Z"
    }

    /// Days from 1970-01-01 to a civil date (Howard Hinnant's days_from_civil algorithm).
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The civil date of a day count from 1970-01-01 (the inverse of `daysSinceEpoch`).
    static func civil(daysSinceEpoch days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

private extension Int64 {
    func dividedRoundingDown(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}
