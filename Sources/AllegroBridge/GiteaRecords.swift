import AllegroGitea
import Foundation

/// What Timmy receives of Gitea: records of kind `gitea.issue`, `gitea.pull` and
/// `gitea.comment`, session `owner/name#N` (the issue's), payload one JSON object with sorted
/// keys (config/README.md, "Gitea records").
enum GiteaRecords {
    /// Bodies are cut at this many bytes (a record must fit the relay's frame).
    static let maxBodyBytes = 64 << 10

    static func change(repo: String, issue: GiteaIssue) -> BridgeStore.Change {
        let kind = issue.isPull ? "gitea.pull" : "gitea.issue"
        var object: [String: Any] = [
            "repo": repo, "number": issue.number, "title": issue.title, "state": issue.state,
            "labels": (issue.labels ?? []).map(\.name), "user": issue.user?.login ?? "", "updated_at": issue.updatedAt,
            "html_url": issue.htmlURL ?? "", "body": cut(issue.body ?? ""), "comments": issue.comments ?? 0,
            "kind": issue.isPull ? "pull" : "issue",
        ]
        if let created = issue.createdAt { object["created_at"] = created }
        if let closed = issue.closedAt { object["closed_at"] = closed }
        if let pull = issue.pullRequest { object["merged"] = pull.merged ?? false }
        return BridgeStore.Change(repo: repo, kind: kind, id: issue.id, updatedAt: issue.updatedAt,
                                  session: "\(repo)#\(issue.number)", payload: json(object), cacheNumber: issue.number,
                                  updatedMillis: millis(issue.updatedAt) ?? 0, createdMillis: issue.createdAt.flatMap(millis) ?? 0)
    }

    /// `number`: the issue's, when known otherwise (a webhook's payload carries the issue).
    static func change(repo: String, comment: GiteaComment, number known: Int64? = nil) -> BridgeStore.Change? {
        guard let number = comment.issueNumber ?? known else { return nil }
        let object: [String: Any] = [
            "repo": repo, "number": number, "id": comment.id, "user": comment.user?.login ?? "", "body": cut(comment.body),
            "updated_at": comment.updatedAt, "created_at": comment.createdAt ?? comment.updatedAt, "html_url": comment.htmlURL ?? "",
        ]
        return BridgeStore.Change(repo: repo, kind: "gitea.comment", id: comment.id, updatedAt: comment.updatedAt,
                                  session: "\(repo)#\(number)", payload: json(object), updatedMillis: millis(comment.updatedAt) ?? 0)
    }

    static func cut(_ text: String) -> String {
        guard text.utf8.count > maxBodyBytes else { return text }
        var kept = String.UnicodeScalarView()
        var bytes = 0
        for scalar in text.unicodeScalars {
            bytes += UTF8.width(scalar)
            if bytes > maxBodyBytes { break }
            kept.append(scalar)
        }
        return String(kept) + "…"
    }

    /// An RFC 3339 time (Gitea's `updated_at`, any offset) in Unix milliseconds.
    static func millis(_ text: String) -> Int64? { RFC3339.millis(text) }

    static func json(_ object: [String: Any]) -> String {
        // Built here from strings and numbers: always encodable.
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
