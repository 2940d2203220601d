/// Record payloads that look like Hermes telemetry (JSON, 128 bytes by default), so compression
/// and copying cost what they would in production: one repeated byte compresses about 100 to 1
/// and flatters anything that compresses. `count` distinct payloads, each exactly `size` bytes,
/// made from a fixed seed (the same bytes in every run and for every peer); senders cycle
/// through them.
struct PayloadPool: Sendable {
    static let count = 1024
    let size: Int
    /// `count` payloads of `size` bytes, back to back.
    let bytes: [UInt8]

    init(size: Int) {
        self.size = size
        var generator = SplitMix(seed: 0x616c_6c65_6772_6f)
        let kinds = ["tool.call", "tool.result", "llm.request", "llm.response", "session.start", "usage", "error"]
        let tools = ["terminal", "read_file", "write_file", "web_search", "patch", "browser_navigate", "todo"]
        let models = ["claude-sonnet-4", "gpt-5-mini", "qwen3-coder", "kimi-k2", "gemini-2.5-pro"]
        let words = ["ls -la /srv", "git status", "pytest -q", "cat README.md", "grep -rn TODO", "curl -s localhost",
                     "make build", "journalctl -u hermes", "df -h", "python3 run.py"]
        var all: [UInt8] = []
        all.reserveCapacity(Self.count * size)
        for _ in 0 ..< Self.count {
            func pick(_ list: [String]) -> String { list[Int(generator.next() % UInt64(list.count))] }
            let text = "{\"ts\":\(1_764_000_000_000 + generator.next() % 1_000_000_000),\"session\":\"h-\(String(generator.next() % 0xffffff, radix: 16))\","
                + "\"kind\":\"\(pick(kinds))\",\"tool\":\"\(pick(tools))\",\"model\":\"\(pick(models))\","
                + "\"tokens\":{\"in\":\(generator.next() % 20_000),\"out\":\(generator.next() % 4_000)},\"ms\":\(generator.next() % 5_000),"
                + "\"ok\":\(generator.next() % 8 != 0),\"args\":\"\(pick(words)) \(generator.next() % 100_000)\"}"
            var payload = Array(text.utf8.prefix(size))
            // Longer payloads repeat the record's own text (a tool result often echoes), not one byte.
            while payload.count < size { payload.append(contentsOf: text.utf8.prefix(size - payload.count)) }
            all.append(contentsOf: payload)
        }
        bytes = all
    }

    /// Pools already made, by size: every sender of a size shares one (making one takes a few
    /// ms, which 100 producers each making their own on their first send turned into 300 ms of
    /// lag at the start of a run).
    private static let made = Shared([Int: PayloadPool]())

    /// The pool of `size`-byte payloads, made once per process.
    static func shared(size: Int) -> PayloadPool {
        made.with { pools in
            if let pool = pools[size] { return pool }
            let pool = PayloadPool(size: size)
            pools[size] = pool
            return pool
        }
    }

    /// Payload `index % count`.
    func withPayload<T>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let start = (index % Self.count) * size
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start ..< start + size])) }
    }
}

/// SplitMix64: a small deterministic generator (Steele, Lea, Flood 2014), enough for test data.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A sender's walk through the pool: payload after payload, the shared pool of the size fetched on
/// first use (and again if the size changes).
struct PayloadCycle {
    private var pool: PayloadPool?
    private var index = 0

    mutating func next<T>(size: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        if pool?.size != size { pool = PayloadPool.shared(size: size) }
        index += 1
        // The pool was just made when missing, so this is never nil.
        return try pool.map { try $0.withPayload(index, body) } ?? body(UnsafeRawBufferPointer(start: nil, count: 0))
    }
}
