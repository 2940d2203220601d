/// What the supervisor knows of this host's Syncthing, from its REST API: the peers and whether
/// each is connected, and for each shared folder how complete each peer is and how long it has
/// been behind. Pure (no I/O, time passed in), so its rules are tested alone: it says which
/// alerts fire or resolve, and measures each peer's sync lag.
///
/// Lag of a peer in a folder: from the first sign that it is behind (a local change to the
/// folder, or its completion seen below 100 %) to the moment it is seen complete again. Signs
/// come from polls (every `syncthing_check_ms`) and from Syncthing's event stream (as they
/// happen), so a catch-up faster than a poll is still measured.
///
/// Alerts (each once per stretch, resolved when it ends): `syncthing_unreachable` while the API
/// does not answer, `syncthing_peer_lost` while a peer is disconnected, `syncthing_folder_stalled`
/// while a connected peer stays behind or a folder is in error; each only after it has lasted
/// `alertMillis`, so a restart or a burst of writes is not an alert.
struct SyncthingTracker: Sendable {
    struct Peer: Sendable, Equatable {
        var id: String
        var name: String
        var connected: Bool
    }

    struct Folder: Sendable, Equatable {
        var id: String
        /// Syncthing's folder state: idle, scanning, syncing, error, ...
        var state: String
        /// The peers it is shared with (device IDs).
        var peers: [String]
    }

    /// One peer's completion of one folder, as Syncthing computes it on this host.
    struct Completion: Sendable, Equatable {
        var folder: String
        var peer: String
        var percent: Double
        var needItems: Int64
        var needBytes: Int64

        var complete: Bool { percent >= 100 && needItems == 0 && needBytes == 0 }
    }

    /// One alert that changes state.
    struct AlertChange: Sendable, Equatable {
        var alert: String
        var subject: String
        var firing: Bool
        var summary: String
    }

    /// A peer caught up with a folder after `lagMillis` behind.
    struct CatchUp: Sendable, Equatable {
        var folder: String
        var peer: String
        var lagMillis: Int64
    }

    let alertMillis: Int64

    private(set) var up = false
    private var unreachableSince: Int64?
    private var unreachableFiring = false
    private(set) var peers: [String: Peer] = [:]
    private var disconnectedSince: [String: Int64] = [:]
    private var lostFiring: Set<String> = []
    private(set) var folders: [String: Folder] = [:]
    private var errorSince: [String: Int64] = [:]
    private var erroredFiring: Set<String> = []
    /// Stalled alerts of folders or peers no longer shared, to resolve at the next `alerts`.
    private var orphanedStalls: [String] = []
    struct Link: Sendable, Equatable {
        var percent: Double = 100
        var behindSince: Int64?
        var lastCatchUpMillis: Int64?
        var stalledFiring = false
    }

    /// Keyed by folder, then peer.
    private(set) var links: [String: [String: Link]] = [:]

    init(alertMillis: Int64) {
        self.alertMillis = alertMillis
    }

    /// A name for a device in alerts and metrics: its configured name, else its ID's first 7
    /// characters (as Syncthing shows it).
    func name(of peer: String) -> String {
        if let name = peers[peer]?.name, !name.isEmpty { return name }
        return String(peer.prefix(7))
    }

    // MARK: Input

    /// The API did not answer a poll.
    mutating func unreachable(atMillis now: Int64) {
        up = false
        if unreachableSince == nil { unreachableSince = now }
    }

    /// A whole poll: the peers, the folders and every (folder, peer) completion.
    mutating func polled(peers seen: [Peer], folders seenFolders: [Folder], completions: [Completion], atMillis now: Int64) -> [CatchUp] {
        up = true
        unreachableSince = nil
        peers = Dictionary(seen.map { ($0.id, $0) }) { first, _ in first }
        for peer in seen {
            if peer.connected { disconnectedSince[peer.id] = nil } else if disconnectedSince[peer.id] == nil { disconnectedSince[peer.id] = now }
        }
        for gone in disconnectedSince.keys where peers[gone] == nil { disconnectedSince[gone] = nil }
        folders = Dictionary(seenFolders.map { ($0.id, $0) }) { first, _ in first }
        for folder in seenFolders {
            if folder.state == "error" { errorSince[folder.id] = errorSince[folder.id] ?? now } else { errorSince[folder.id] = nil }
            var kept: [String: Link] = [:]
            for peer in folder.peers { kept[peer] = links[folder.id]?[peer] ?? Link() }
            for (peer, link) in links[folder.id] ?? [:] where kept[peer] == nil && link.stalledFiring { orphanedStalls.append("\(folder.id) to \(name(of: peer))") }
            links[folder.id] = kept
        }
        for (gone, old) in links where folders[gone] == nil {
            for (peer, link) in old where link.stalledFiring { orphanedStalls.append("\(gone) to \(name(of: peer))") }
            links[gone] = nil
        }
        for gone in errorSince.keys where folders[gone] == nil { errorSince[gone] = nil }
        for gone in erroredFiring where folders[gone] == nil {
            erroredFiring.remove(gone)
            orphanedStalls.append(gone)
        }
        return completions.compactMap { completed($0, atMillis: now) }
    }

    /// The folder changed on this host (Syncthing's LocalIndexUpdated): every peer sharing it
    /// is behind from now until it is seen complete.
    mutating func localChange(folder: String, atMillis now: Int64) {
        guard var peersOfFolder = links[folder] else { return }
        for (peer, var link) in peersOfFolder where link.behindSince == nil {
            link.behindSince = now
            peersOfFolder[peer] = link
        }
        links[folder] = peersOfFolder
    }

    /// A peer's completion of a folder (from a poll or a FolderCompletion event); a catch-up
    /// when it ends a stretch behind.
    mutating func completed(_ completion: Completion, atMillis now: Int64) -> CatchUp? {
        guard var link = links[completion.folder]?[completion.peer] else { return nil }
        link.percent = completion.percent
        var caughtUp: CatchUp?
        if completion.complete {
            if let since = link.behindSince {
                let lag = max(now - since, 0)
                link.lastCatchUpMillis = lag
                caughtUp = CatchUp(folder: completion.folder, peer: completion.peer, lagMillis: lag)
            }
            link.behindSince = nil
        } else if link.behindSince == nil {
            link.behindSince = now
        }
        links[completion.folder]?[completion.peer] = link
        return caughtUp
    }

    // MARK: Output

    /// How long the peer has been behind in the folder now; 0 when complete.
    func lagMillis(folder: String, peer: String, atMillis now: Int64) -> Int64 {
        guard let since = links[folder]?[peer]?.behindSince else { return 0 }
        return max(now - since, 0)
    }

    /// The alerts whose state changes now.
    mutating func alerts(atMillis now: Int64) -> [AlertChange] {
        var changes: [AlertChange] = []
        let unreachable = unreachableSince.map { now - $0 >= alertMillis } ?? false
        if unreachable != unreachableFiring {
            unreachableFiring = unreachable
            changes.append(.init(alert: "syncthing_unreachable", subject: "syncthing", firing: unreachable,
                                 summary: unreachable ? "Syncthing's REST API has not answered for \(SupervisorReporter.duration(alertMillis)) or more"
                                     : "Syncthing's REST API answers again"))
        }
        // Peers and folders are only judged from answers: while the API is down, nothing is known.
        guard up else { return changes }
        for peer in peers.values.sorted(by: { $0.id < $1.id }) {
            let lost = disconnectedSince[peer.id].map { now - $0 >= alertMillis } ?? false
            if lost != lostFiring.contains(peer.id) {
                if lost { lostFiring.insert(peer.id) } else { lostFiring.remove(peer.id) }
                changes.append(.init(alert: "syncthing_peer_lost", subject: name(of: peer.id), firing: lost,
                                     summary: lost ? "Syncthing peer \(name(of: peer.id)) has been disconnected for \(SupervisorReporter.duration(alertMillis)) or more"
                                         : "Syncthing peer \(name(of: peer.id)) is connected again"))
            }
        }
        for gone in lostFiring where peers[gone] == nil {
            lostFiring.remove(gone)
            changes.append(.init(alert: "syncthing_peer_lost", subject: String(gone.prefix(7)), firing: false, summary: "The peer is no longer configured"))
        }
        for subject in orphanedStalls {
            changes.append(.init(alert: "syncthing_folder_stalled", subject: subject, firing: false, summary: "The folder or peer is no longer shared"))
        }
        orphanedStalls = []
        for folder in folders.keys.sorted() {
            let errored = errorSince[folder].map { now - $0 >= alertMillis } ?? false
            if errored != erroredFiring.contains(folder) {
                if errored { erroredFiring.insert(folder) } else { erroredFiring.remove(folder) }
                changes.append(.init(alert: "syncthing_folder_stalled", subject: folder, firing: errored,
                                     summary: errored ? "Folder \(folder) has been in error for \(SupervisorReporter.duration(alertMillis)) or more"
                                         : "Folder \(folder) is out of error"))
            }
            for (peer, link) in (links[folder] ?? [:]).sorted(by: { $0.key < $1.key }) {
                let connected = peers[peer]?.connected ?? false
                // Behind while connected: stalled. Once firing, only completion resolves it (a peer
                // that disconnects meanwhile is still behind; `syncthing_peer_lost` says why).
                let stalled = link.stalledFiring ? link.behindSince != nil
                    : connected && link.behindSince.map { now - $0 >= alertMillis } ?? false
                guard stalled != link.stalledFiring else { continue }
                links[folder]?[peer]?.stalledFiring = stalled
                let subject = "\(folder) to \(name(of: peer))"
                changes.append(.init(alert: "syncthing_folder_stalled", subject: subject, firing: stalled,
                                     summary: stalled ? "\(name(of: peer)) has been behind in folder \(folder) for \(SupervisorReporter.duration(lagMillis(folder: folder, peer: peer, atMillis: now)))"
                                         + " (\((link.percent * 10).rounded() / 10) % complete) while connected"
                                         : "\(name(of: peer)) has caught up with folder \(folder)"))
            }
        }
        return changes
    }
}
