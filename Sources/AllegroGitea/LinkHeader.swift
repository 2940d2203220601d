import Foundation

/// RFC 8288 `Link` headers as Gitea writes them for pagination:
/// `<https://host/api/v1/repos/o/r/issues?page=2&limit=50>; rel="next",<...>; rel="last"`.
enum LinkHeader {
    /// The URL of relation `rel` (`next`, `last`, ...), or nil.
    static func url(_ header: String, rel: String) -> String? {
        for entry in header.split(separator: ",") {
            let parts = entry.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let target = parts.first, target.hasPrefix("<"), target.hasSuffix(">") else { continue }
            let relations = parts.dropFirst().filter { $0.hasPrefix("rel=") }.flatMap {
                $0.dropFirst(4).trimmingCharacters(in: CharacterSet(charactersIn: "\"")).split(separator: " ").map(String.init)
            }
            if relations.contains(rel) { return String(target.dropFirst().dropLast()) }
        }
        return nil
    }
}
