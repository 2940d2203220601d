// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Allegro",
    products: [
        .executable(name: "allegro", targets: ["allegro"]),
        .library(name: "AllegroWire", targets: ["AllegroWire"]),
        .library(name: "AllegroClient", targets: ["AllegroClient"]),
        // For the benchmarks package in Benchmarks/.
        .library(name: "AllegroRing", targets: ["AllegroRing"]),
        .library(name: "AllegroSpill", targets: ["AllegroSpill"]),
        .library(name: "AllegroPosix", targets: ["AllegroPosix"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // One trait per package whose traits are set: SwiftPM 6.3 passes a package's trait
        // defines in a random order (a Set), so two of them changed the compiler's command line
        // from one build to the next and rebuilt these modules every other time. JSON files are
        // read through the YAML provider (JSON is YAML), after a strict JSON check of our own.
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["YAML"]),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // System library (Debian: zlib1g-dev; GRDB links libsqlite3-dev itself) and the Linux syscall shim.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // LZ4 for the spill's optional fast codec (`spill_codec: lz4`).
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // libdeflate for the spill's default codec, raw deflate: the same format as zlib's, written
        // 1.8x as fast on these records (BENCHMARKS.md), and for the blocks' CRC-32.
        .systemLibrary(name: "CDeflate", pkgConfig: "libdeflate", providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(name: "CAllegroSys"),

        // Wire protocol v1: frames, handshake, records. Pure codec, no I/O.
        .target(name: "AllegroWire"),
        // The only module that calls Glibc for sockets, epoll, signals and clocks.
        .target(name: "AllegroPosix", dependencies: ["CAllegroSys"]),
        // The lock-free record ring.
        .target(name: "AllegroRing", dependencies: [.product(name: "Atomics", package: "swift-atomics")]),
        // The event log format (swift-log), shared by the relay and the siblings.
        .target(name: "AllegroLog", dependencies: ["AllegroPosix", .product(name: "Logging", package: "swift-log")]),
        // The durability pipeline: block format, segments, the spill thread (group commit, state
        // saves, retention), recovery, replay reading.
        .target(name: "AllegroSpill", dependencies: ["AllegroPosix", "AllegroWire", "AllegroRing", "AllegroLog", "CZlib", "CLZ4", "CDeflate",
                                                     .product(name: "Atomics", package: "swift-atomics"),
                                                     .product(name: "Metrics", package: "swift-metrics")]),
        // Small state in SQLite (WAL): cursors, producer marks, sequence reservation, events.
        .target(name: "AllegroStore", dependencies: ["AllegroSpill", .product(name: "GRDB", package: "GRDB.swift"),
                                                     .product(name: "GRDBSQLite", package: "GRDB.swift")]),
        // The relay: core protocol logic and its epoll event loop.
        .target(
            name: "AllegroRelay",
            dependencies: ["AllegroWire", "AllegroPosix", "AllegroRing", "AllegroSpill", "AllegroStore", "AllegroLog",
                           .product(name: "Atomics", package: "swift-atomics"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Metrics", package: "swift-metrics")]
        ),
        // Settings from the embedded defaults, a YAML or JSON file, the environment and flags.
        .target(
            name: "AllegroConfig",
            dependencies: ["AllegroRelay", "AllegroSpill", "AllegroPosix", "AllegroControl", "AllegroBridge", "AllegroMessages", "AllegroSupervisor",
                           .product(name: "Configuration", package: "swift-configuration"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "SystemPackage", package: "swift-system"),
                           .product(name: "Yams", package: "Yams")]
        ),
        // The HTTP control port (health, metrics, status, sessions) and the process lifecycle.
        .target(
            name: "AllegroControl",
            dependencies: ["AllegroRelay", "AllegroStore", "AllegroLog", "AllegroClient", "AllegroMessages", "AllegroWire",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle")]
        ),
        // Timmy's signed approvals: the only maker of Approved<Action> (swift-crypto's Ed25519).
        .target(name: "AllegroApproval", dependencies: [.product(name: "Crypto", package: "swift-crypto"),
                                                        .product(name: "GRDB", package: "GRDB.swift")]),
        // Allegro Requests and Reports (the seed's messages to Timmy): Markdown, JSON, Telegram HTML.
        .target(name: "AllegroMessages", dependencies: ["AllegroWire"]),
        // Gitea's REST API as Allegro's bot account (async-http-client; models from swagger.v1.json).
        .target(name: "AllegroGitea", dependencies: [.product(name: "AsyncHTTPClient", package: "async-http-client"),
                                                     .product(name: "NIOCore", package: "swift-nio"),
                                                     .product(name: "NIOHTTP1", package: "swift-nio")]),
        // `allegro bridge`: Allegro toward the outside world; today the Telegram notifier (a durable
        // collector of the relay). Sees the relay only over the wire (AllegroClient).
        .target(
            name: "AllegroBridge",
            dependencies: ["AllegroClient", "AllegroMessages", "AllegroLog", "AllegroPosix", "AllegroGitea", "AllegroWire", "AllegroApproval",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]
        ),
        // `allegro supervise`: services kept running (own process groups, probes, backoff that never
        // gives up), reported to Timmy on the stream. Sees the relay only over the wire and HTTP.
        .target(
            name: "AllegroSupervisor",
            dependencies: ["AllegroClient", "AllegroLog", "AllegroMessages", "AllegroPosix",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle")]
        ),
        // Producer and collector clients.
        .target(name: "AllegroClient", dependencies: ["AllegroWire", "AllegroPosix", "AllegroLog"]),

        // The command line.
        .executableTarget(
            name: "allegro",
            dependencies: [
                "AllegroWire", "AllegroPosix", "AllegroRelay", "AllegroClient", "AllegroConfig", "AllegroControl", "AllegroStore", "AllegroLog",
                "AllegroApproval", "AllegroMessages", "AllegroBridge", "AllegroSupervisor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),

        .testTarget(name: "AllegroWireTests", dependencies: ["AllegroWire"]),
        .testTarget(name: "AllegroRingTests", dependencies: ["AllegroRing", .product(name: "Atomics", package: "swift-atomics")]),
        .testTarget(name: "AllegroRelayTests", dependencies: ["AllegroRelay", "AllegroSpill", "AllegroWire", "AllegroRing", "AllegroLog"]),
        .testTarget(name: "AllegroStoreTests", dependencies: ["AllegroStore", "AllegroSpill"]),
        .testTarget(name: "AllegroSpillTests", dependencies: ["AllegroSpill", "AllegroPosix", "AllegroWire", "AllegroRing", "AllegroLog", "CZlib"]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["CZlib", "CAllegroSys"]),
        .testTarget(name: "AllegroApprovalTests", dependencies: ["AllegroApproval"]),
        .testTarget(name: "AllegroMessagesTests", dependencies: ["AllegroMessages"]),
        .testTarget(name: "AllegroControlTests", dependencies: ["AllegroControl", "AllegroRelay", "AllegroMessages"]),
        .testTarget(name: "AllegroBridgeTests", dependencies: ["AllegroBridge", "AllegroMessages", "AllegroGitea"]),
        .testTarget(name: "AllegroSupervisorTests", dependencies: ["AllegroSupervisor", "AllegroPosix", "AllegroLog",
                                                                  .product(name: "Logging", package: "swift-log")]),
        // Shared by the end-to-end suite and the sibling programs' suites: the real binary as a
        // process (relay, push, tail), a raw protocol client, the control port over HTTP.
        .target(name: "AllegroTestSupport", dependencies: ["AllegroWire", "AllegroClient", "AllegroPosix"],
                path: "Tests/AllegroTestSupport"),
        .testTarget(name: "AllegroEndToEndTests",
                    dependencies: ["allegro", "AllegroTestSupport", "AllegroWire", "AllegroClient", "AllegroPosix", "AllegroStore"]),
    ],
    swiftLanguageModes: [.v6]
)
