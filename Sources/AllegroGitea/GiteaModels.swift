/// The parts of Gitea's API models (swagger.v1.json, v1.26.3) the bridge reads. Every field the
/// spec may leave out is optional; unknown fields are ignored, so a newer Gitea still decodes.

/// A Gitea account (`User`).
public struct GiteaUser: Codable, Sendable, Equatable {
    public var id: Int64
    public var login: String
    public var fullName: String?

    enum CodingKeys: String, CodingKey {
        case id, login
        case fullName = "full_name"
    }
}

/// A label (`Label`); `exclusive` labels share a scope (`status/...`): one per issue.
public struct GiteaLabel: Codable, Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var color: String?
    public var exclusive: Bool?
}

/// What marks an issue as a pull request (`PullRequestMeta`).
public struct GiteaPullRequestMeta: Codable, Sendable, Equatable {
    public var merged: Bool?
    public var draft: Bool?
    public var htmlURL: String?

    enum CodingKeys: String, CodingKey {
        case merged, draft
        case htmlURL = "html_url"
    }
}

/// An issue or a pull request (`Issue`: Gitea lists pull requests among issues, with
/// `pull_request` set).
public struct GiteaIssue: Codable, Sendable, Equatable {
    public var id: Int64
    public var number: Int64
    public var title: String
    public var body: String?
    public var state: String
    public var labels: [GiteaLabel]?
    public var user: GiteaUser?
    public var comments: Int64?
    public var htmlURL: String?
    public var createdAt: String?
    public var updatedAt: String
    public var closedAt: String?
    public var pullRequest: GiteaPullRequestMeta?

    public var isPull: Bool { pullRequest != nil }

    enum CodingKeys: String, CodingKey {
        case id, number, title, body, state, labels, user, comments
        case htmlURL = "html_url"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case closedAt = "closed_at"
        case pullRequest = "pull_request"
    }
}

/// A comment on an issue or a pull request (`Comment`).
public struct GiteaComment: Codable, Sendable, Equatable {
    public var id: Int64
    public var body: String
    public var user: GiteaUser?
    public var htmlURL: String?
    /// `.../issues/N`; the issue's number is its last component.
    public var issueURL: String?
    public var pullRequestURL: String?
    public var createdAt: String?
    public var updatedAt: String

    /// The number of the issue (or pull request) commented on, from its URL.
    public var issueNumber: Int64? {
        for url in [issueURL, pullRequestURL] {
            if let url, !url.isEmpty, let last = url.split(separator: "/").last, let number = Int64(last) { return number }
        }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case id, body, user
        case htmlURL = "html_url"
        case issueURL = "issue_url"
        case pullRequestURL = "pull_request_url"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// A repository (`Repository`), for its default branch.
public struct GiteaRepository: Codable, Sendable, Equatable {
    public var id: Int64
    public var fullName: String?
    public var defaultBranch: String?

    enum CodingKeys: String, CodingKey {
        case id
        case fullName = "full_name"
        case defaultBranch = "default_branch"
    }
}

/// A branch (`Branch`): its head commit and whether it is protected.
public struct GiteaBranch: Codable, Sendable, Equatable {
    public struct Commit: Codable, Sendable, Equatable {
        public var id: String
    }

    public var name: String
    public var commit: Commit?
    public var protected: Bool?
}

/// One side of a pull request (`PRBranchInfo`).
public struct GiteaPullBranch: Codable, Sendable, Equatable {
    public var ref: String
    public var sha: String?
}

/// A pull request (`PullRequest`).
public struct GiteaPull: Codable, Sendable, Equatable {
    public var id: Int64
    public var number: Int64
    public var state: String
    public var title: String?
    public var merged: Bool?
    public var mergeable: Bool?
    public var htmlURL: String?
    public var head: GiteaPullBranch?
    public var base: GiteaPullBranch?

    enum CodingKeys: String, CodingKey {
        case id, number, state, title, merged, mergeable, head, base
        case htmlURL = "html_url"
    }
}
