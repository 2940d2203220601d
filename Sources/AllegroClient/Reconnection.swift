import AllegroPosix

/// The one way a client reaches a relay: each endpoint in turn, a round of failures followed by
/// a jittered back-off that doubles up to 2 s, every attempt told to `onConnection`, until an
/// attempt succeeds, an error is permanent, or `forMillis` has passed since the first attempt
/// (one round at least, so `forMillis` 0 means one try per endpoint).
struct Reconnection {
    let relays: [SocketAddress]
    let forMillis: Int
    let onConnection: (@Sendable (ConnectionEvent) -> Void)?

    /// Runs `attempt` against the endpoints until one succeeds; its result and the address used.
    func connect<T>(_ attempt: (SocketAddress) throws(ClientError) -> T) throws(ClientError) -> (T, SocketAddress) {
        guard !relays.isEmpty else { throw .disconnected("no relay address given") }
        let deadline = Clock.monotonicNanos + UInt64(max(forMillis, 0)) * 1_000_000
        var delayNanos: UInt64 = 50_000_000
        var tried = 0
        while true {
            let address = relays[tried % relays.count]
            tried += 1
            do throws(ClientError) {
                let result = try attempt(address)
                onConnection?(.connected(address: address))
                return (result, address)
            } catch {
                let now = Clock.monotonicNanos
                let roundDone = tried % relays.count == 0
                let retry = !error.isPermanent && (now < deadline || !roundDone)
                let millisLeft = now < deadline ? Int((deadline - now) / 1_000_000) : 0
                onConnection?(.failed(address: address, error: error, willRetry: retry, millisLeft: millisLeft))
                if !retry { throw error }
            }
            if tried % relays.count == 0 {
                Clock.sleep(nanos: delayNanos / 2 + UInt64.random(in: 0 ... delayNanos / 2))
                delayNanos = min(delayNanos * 2, 2_000_000_000)
            }
        }
    }
}
