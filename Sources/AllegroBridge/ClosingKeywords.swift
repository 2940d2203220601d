/// Gitea closes an issue when a merged pull request's text says "fixes #3" (and the other
/// closing keywords). Allegro never closes an issue implicitly: in every body and comment it
/// writes, a closing keyword before a reference becomes `Refs`, keeping the reference.
enum ClosingKeywords {

    /// `text` with each "KEYWORD[:] [owner/repo]#N" written "Refs [owner/repo]#N".
    static func rewrite(_ text: String) -> String {
        let pattern = #/(?i)\b(close[sd]?|fix(?:e[sd])?|resolve[sd]?)\b:?(\s+)((?:[\w.-]+/[\w.-]+)?#\d+)/#
        return text.replacing(pattern) { match in "Refs\(match.output.2)\(match.output.3)" }
    }
}
