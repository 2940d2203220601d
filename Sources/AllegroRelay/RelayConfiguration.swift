import AllegroPosix
import AllegroSpill
import AllegroWire

/// Everything the relay needs to run, with the embedded defaults `allegro relay` uses bare.
/// `validate()` checks the combination and names the offending key.
public struct RelayConfiguration: Sendable, Equatable {
    public var listen = "127.0.0.1:7400"
    public var dataDirectory = "allegro-data"
    /// The identity sent in WELCOME; empty: the data directory's own, made at its first start
    /// and kept in `DATA/relay_id` (`RelayIdentity`), so that no two relays share one.
    public var relayID = ""
    /// Token producers must present; nil accepts any (loopback only).
    public var producerToken: String?
    /// Token collectors must present; nil accepts any (loopback only).
    public var collectorToken: String?
    /// Names of the durable collectors: each has a committed cursor that survives restarts, and
    /// retention counts what it removes before they committed it. Timmy's collector, the one
    /// Allegro exists for, is configured out of the box (`durable_collectors=` for none).
    public var durableCollectors: [String] = ["timmy"]
    /// Bytes of record memory in the ring (rounded up to a power of two).
    public var ringBytes = 64 << 20
    /// Records the ring can index (rounded up to a power of two).
    public var ringRecords = 1 << 20
    public var maxConnections = 1024
    /// Largest frame accepted after the handshake, and the largest DELIVER sent.
    public var maxFrameBytes = 1 << 20
    public var maxBatchRecords = 4096
    public var heartbeatMillis = 5_000
    public var idleTimeoutMillis = 15_000
    public var handshakeTimeoutMillis = 5_000
    /// Bytes queued to one collector before the relay stops filling its buffer until it drains.
    public var collectorBufferBytes = 1 << 20
    /// Threads that read the spill for collectors catching up, shared by all of them.
    public var replayThreads = 2
    /// Least time between the starts of two spill fsyncs (group commit), in microseconds (the key,
    /// `spill_fsync_interval_ms`, takes milliseconds with up to three decimals); acks wait for
    /// it. 0: each fsync as soon as the disk is free, batching what arrived during the last.
    /// 1 ms by default: on a 2-core host at 10k records/s, 0 spends three times the CPU (65 µs a
    /// record against 18) for acks half a millisecond sooner, and makes a flood with lz4 a fifth
    /// slower (BENCHMARKS.md, "libdeflate, the group commit's interval below a millisecond").
    public var spillFsyncIntervalMicros = 1_000
    /// A segment file is sealed past this size and a new one started.
    public var spillSegmentBytes = 64 << 20
    /// Uncompressed bytes of records per spill block.
    public var spillBlockBytes = 64 << 10
    /// Zeros written ahead of the newest segment's blocks, so a group commit's fdatasync
    /// overwrites instead of growing the file (no journal commit: half the latency and CPU per
    /// fsync here, BENCHMARKS.md "Zeros ahead"). 0: segments grow block by block.
    public var spillPreallocateBytes = 1 << 20
    /// How many nice steps below the relay's other threads the spill thread runs, so its
    /// compression and fsyncs give way to the I/O thread on a contended CPU (live p99 at 10k/s
    /// here: 82-88 µs against 127-1,509 at 0; at 10, durable delivery fell behind at 100k/s;
    /// BENCHMARKS.md "The spill thread's priority").
    public var spillThreadNiceIncrement = 7
    /// Compression level for spill blocks (1 fastest ... 9 smallest, as zlib counts), for the
    /// deflate codec (libdeflate's levels) and the zlib codec (zlib's).
    public var spillCompressionLevel = 1
    /// The codec of new spill blocks: deflate (default), zlib or lz4.
    public var spillCodec = SpillCodec.deflate
    /// Spill segments whose newest record is older than this are removed (default 7 days).
    public var retentionMaxAgeMillis = 7 * 24 * 3600 * 1000
    /// Oldest segments are removed while the spill is larger than this; 0 means no size limit
    /// (a full disk then stops acks and ingest instead of removing data).
    public var retentionMaxBytes = 0
    /// On SIGTERM: how long to wait for records producers had already sent to be spilled and acked.
    public var shutdownGraceMillis = 10_000

    public init() {}

    /// A setting that cannot work, naming its key.
    public struct Invalid: Error, Equatable, Sendable, CustomStringConvertible {
        public var key: String
        public var value: String
        public var allowed: String
        public var description: String { "invalid configuration: \(key) = \(value): \(allowed)" }
    }

    public func validate() throws(Invalid) {
        let address: SocketAddress
        do { address = try SocketAddress(parsing: listen) } catch {
            throw Invalid(key: "listen", value: listen, allowed: error.reason + "; expected HOST:PORT with a numeric address")
        }
        if !address.isLoopback && (producerToken == nil || collectorToken == nil) {
            throw Invalid(key: "listen", value: listen, allowed: "a non-loopback address needs both producer_token and collector_token set (ALLEGRO_PRODUCER_TOKEN, ALLEGRO_COLLECTOR_TOKEN), or anyone on the network could publish and read")
        }
        for (key, token) in [("producer_token", producerToken), ("collector_token", collectorToken)] {
            if let token, token.isEmpty || token.utf8.count > Wire.maxTokenLength {
                throw Invalid(key: key, value: "(\(token.utf8.count) bytes)", allowed: "1 ... \(Wire.maxTokenLength) bytes")
            }
        }
        for name in durableCollectors where name.isEmpty || name.utf8.count > 255 {
            throw Invalid(key: "durable_collectors", value: "\"\(name)\"", allowed: "names of 1 ... 255 bytes")
        }
        if Set(durableCollectors).count != durableCollectors.count {
            throw Invalid(key: "durable_collectors", value: durableCollectors.joined(separator: ","), allowed: "each name once")
        }
        try check("max_frame_bytes", maxFrameBytes, 4096 ... Wire.absoluteMaxFrameLength)
        try check("max_batch_records", maxBatchRecords, 1 ... 1 << 20)
        try check("ring_bytes", ringBytes, 4 * maxFrameBytes ... 1 << 40, "at least 4 x max_frame_bytes")
        try check("ring_records", ringRecords, 1024 ... 1 << 30)
        try check("max_connections", maxConnections, 1 ... 1_000_000)
        try check("replay_threads", replayThreads, 1 ... 64)
        try check("heartbeat_ms", heartbeatMillis, 10 ... 3_600_000)
        try check("idle_timeout_ms", idleTimeoutMillis, heartbeatMillis + 1 ... 86_400_000, "more than heartbeat_ms")
        try check("handshake_timeout_ms", handshakeTimeoutMillis, 10 ... 600_000)
        try check("collector_buffer_bytes", collectorBufferBytes, 64 << 10 ... 1 << 30)
        guard (0 ... 10_000_000).contains(spillFsyncIntervalMicros) else {
            throw Invalid(key: "spill_fsync_interval_ms", value: DecimalMilliseconds.text(micros: spillFsyncIntervalMicros),
                          allowed: "0 ... 10000 (up to three decimals: 0.25 is 250 µs)")
        }
        try check("spill_segment_bytes", spillSegmentBytes, 64 << 10 ... 1 << 34)
        try check("spill_block_bytes", spillBlockBytes, 4 << 10 ... 16 << 20)
        try check("spill_preallocate_bytes", spillPreallocateBytes, 0 ... 64 << 20)
        try check("spill_thread_nice_increment", spillThreadNiceIncrement, 0 ... 19)
        try check("spill_compression_level", spillCompressionLevel, 1 ... 9)
        try check("retention_max_age_ms", retentionMaxAgeMillis, 100 ... Int(Int32.max) * 100)
        try check("retention_max_bytes", retentionMaxBytes, 0 ... 1 << 50)
        try check("shutdown_grace_ms", shutdownGraceMillis, 0 ... 600_000)
        if retentionMaxBytes > 0 && retentionMaxBytes < 2 * spillSegmentBytes {
            throw Invalid(key: "retention_max_bytes", value: String(retentionMaxBytes),
                          allowed: "0 (no limit) or at least 2 x spill_segment_bytes (\(2 * spillSegmentBytes))")
        }
        if !relayID.isEmpty && !RelayIdentity.isUsable(relayID) {
            throw Invalid(key: "relay_id", value: relayID,
                          allowed: "1 ... 255 bytes of printable ASCII without spaces, or empty for the data directory's own identity")
        }
    }

    private func check(_ key: String, _ value: Int, _ range: ClosedRange<Int>, _ note: String? = nil) throws(Invalid) {
        guard range.contains(value) else {
            throw Invalid(key: key, value: String(value), allowed: note.map { "\($0) (\(range.lowerBound) ... \(range.upperBound))" } ?? "\(range.lowerBound) ... \(range.upperBound)")
        }
    }

    /// Bytes queued to a connection beyond which the relay stops reading it until it drains:
    /// a peer that sends but never reads cannot make the relay buffer answers without bound.
    var outputBacklogLimit: Int { collectorBufferBytes + maxFrameBytes + 64 * 1024 }

    /// The limits announced in WELCOME and enforced after the handshake.
    var decodeLimits: DecodeLimits { DecodeLimits(maxFrameLength: maxFrameBytes, maxBatchRecords: maxBatchRecords) }

    /// The spill pipeline's settings: segments under `DATA/spill`.
    var spillSettings: SpillSettings {
        SpillSettings(directory: dataDirectory + "/spill", segmentBytes: spillSegmentBytes, blockBytes: spillBlockBytes,
                      fsyncIntervalMicros: spillFsyncIntervalMicros, compressionLevel: spillCompressionLevel,
                      retentionMaxAgeMillis: retentionMaxAgeMillis, retentionMaxBytes: retentionMaxBytes, codec: spillCodec,
                      preallocateBytes: spillPreallocateBytes, threadNiceIncrement: Int32(spillThreadNiceIncrement))
    }
}
