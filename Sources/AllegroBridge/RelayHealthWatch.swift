import AllegroMessages
import AsyncHTTPClient
import NIOCore

/// The one alert that cannot travel on the relay's stream: the relay itself failing. Its own
/// alerts reach a durable collector only once fsync'd, so while its spill cannot write (a full
/// disk) or it is down, nothing it raises arrives. The notifier therefore also asks the relay's
/// `/health`; after `downMillis` of failures it raises `relay_unhealthy` itself (straight into
/// its policy, told like any alert), and resolves it once `/health` answers 200 again.
struct RelayHealthRule: Sendable {
    let subject: String
    let downMillis: Int64
    private(set) var failingSince: Int64?
    private(set) var firing: AllegroAlert?

    /// `told`: the alert a previous run told and never resolved (from the ledger).
    init(subject: String, downMillis: Int64, told: AllegroAlert? = nil) {
        self.subject = subject
        self.downMillis = downMillis
        firing = told
    }

    /// One probe's result; returns the alert when its state changes.
    mutating func observe(healthy: Bool, reason: String, nowMillis: Int64) -> AllegroAlert? {
        if healthy {
            failingSince = nil
            guard let alert = firing else { return nil }
            firing = nil
            return alert.with(status: .resolved, summary: "the relay answers /health again: \(alert.summary)")
        }
        let since = failingSince ?? nowMillis
        failingSince = since
        guard firing == nil, nowMillis - since >= downMillis else { return nil }
        let summary = "the relay has failed its /health for \(max(nowMillis - since, 0) / 1000) s: \(reason)"
        firing = try? AllegroAlert(alert: "relay_unhealthy", subject: subject, status: .firing, severity: .critical,
                                   summary: String(summary.prefix(500)), sinceMillis: since)
        return firing
    }
}

/// Asks the relay's control port for `/health` (async-http-client, 2 s deadline).
struct RelayHealthProbe: Sendable {
    let http: HTTPClient
    let url: String

    /// Healthy, or why not (the relay's own reason when it gave one).
    func probe() async -> (healthy: Bool, reason: String) {
        do {
            let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(2))
            let body = try await response.body.collect(upTo: 64 << 10)
            if response.status == .ok { return (true, "") }
            return (false, "HTTP \(response.status.code) \(String(buffer: body).prefix(300))")
        } catch {
            return (false, "no answer from \(url): \(error)")
        }
    }
}
