/// Telegram's limits on a message's text, applied to our HTML: at most 4,096 characters a
/// message, so longer text is split at line ends (every line we write closes its own tags),
/// and an over-long line at a character that is not inside an entity (`&amp;`). Lengths are
/// counted in UTF-16 code units of the HTML, which is never less than what Telegram counts
/// after parsing it.
public enum TelegramText {
    public static let maxCharacters = 4096

    /// `html` in parts of at most `limit` UTF-16 code units each, none empty.
    public static func split(_ html: String, limit requested: Int = maxCharacters) -> [String] {
        let limit = max(requested, 2)  // a scalar is at most two UTF-16 code units
        var parts: [String] = []
        var current = ""
        var currentLength = 0
        func flush() {
            if !current.isEmpty { parts.append(current) }
            current = ""
            currentLength = 0
        }
        for line in html.split(separator: "\n", omittingEmptySubsequences: false) {
            var pieces = [Substring(line)]
            if line.utf16.count > limit { pieces = cut(Substring(line), limit: limit) }
            for piece in pieces {
                let length = piece.utf16.count
                if currentLength > 0 && currentLength + 1 + length > limit { flush() }
                if currentLength > 0 { current += "\n"; currentLength += 1 }
                current += piece
                currentLength += length
            }
        }
        flush()
        return parts
    }

    /// An over-long line in pieces of at most `limit` code units, never inside `&...;` and never
    /// between the halves of a surrogate pair (cuts are on scalar boundaries).
    static func cut(_ line: Substring, limit: Int) -> [Substring] {
        var pieces: [Substring] = []
        var start = line.startIndex
        while start < line.endIndex {
            var end = start
            var length = 0
            var lastSafe = start
            var index = start
            while index < line.endIndex {
                let scalar = line.unicodeScalars[index]
                let width = scalar.utf16.count
                if length + width > limit { break }
                length += width
                index = line.unicodeScalars.index(after: index)
                if scalar == ";" || !isInsideEntity(line, start, index) { lastSafe = index }
                end = index
            }
            if end < line.endIndex && lastSafe > start { end = lastSafe }
            pieces.append(line[start ..< end])
            start = end
        }
        return pieces
    }

    /// Whether the text from `start` to `end` ends inside an entity (`&` with no `;` after it yet).
    private static func isInsideEntity(_ line: Substring, _ start: Substring.Index, _ end: Substring.Index) -> Bool {
        var index = end
        var steps = 0
        while index > start && steps < 10 {
            index = line.unicodeScalars.index(before: index)
            let scalar = line.unicodeScalars[index]
            if scalar == ";" { return false }
            if scalar == "&" { return true }
            steps += 1
        }
        return false
    }

    /// The text without markup, for Telegram's plain mode when it refuses our HTML: tags
    /// removed, the entities we write turned back into characters.
    public static func plain(_ html: String) -> String {
        var out = ""
        var inTag = false
        for character in html {
            if inTag {
                if character == ">" { inTag = false }
            } else if character == "<" {
                inTag = true
            } else {
                out.append(character)
            }
        }
        return out.replacing("&lt;", with: "<").replacing("&gt;", with: ">").replacing("&quot;", with: "\"").replacing("&amp;", with: "&")
    }
}
