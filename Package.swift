// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Allegro",
    platforms: [.macOS(.v14)],
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
    ],
    targets: [
        // System libraries (Debian: zlib1g-dev, libsqlite3-dev) and the Linux syscall shim.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CAllegroSys"),

        // Wire protocol v1: frames, handshake, records. Pure codec, no I/O.
        .target(name: "AllegroWire"),
        // The only module that calls Glibc for sockets, epoll, signals and clocks.
        .target(name: "AllegroPosix", dependencies: ["CAllegroSys"]),
        // The lock-free record ring.
        .target(name: "AllegroRing", dependencies: [.product(name: "Atomics", package: "swift-atomics")]),
        // The compressed on-disk spill: block format, segments, recovery, replay reading.
        .target(name: "AllegroSpill", dependencies: ["AllegroPosix", "AllegroWire", "CZlib"]),
        // Small state in SQLite (WAL): cursors, producer marks, sequence reservation, events.
        .target(name: "AllegroStore", dependencies: [.product(name: "GRDB", package: "GRDB.swift")]),
        // The relay: core protocol logic and its epoll event loop.
        .target(
            name: "AllegroRelay",
            dependencies: ["AllegroWire", "AllegroPosix", "AllegroRing", "AllegroSpill", "AllegroStore",
                           .product(name: "Atomics", package: "swift-atomics")]
        ),
        // Producer and collector clients.
        .target(name: "AllegroClient", dependencies: ["AllegroWire", "AllegroPosix"]),

        // The command line.
        .executableTarget(
            name: "allegro",
            dependencies: [
                "AllegroWire", "AllegroPosix", "AllegroRelay", "AllegroClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "AllegroWireTests", dependencies: ["AllegroWire"]),
        .testTarget(name: "AllegroRingTests", dependencies: ["AllegroRing", .product(name: "Atomics", package: "swift-atomics")]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["CZlib", "CSQLite", "CAllegroSys"]),
        .testTarget(name: "AllegroCLITests", dependencies: ["allegro", "AllegroWire", "AllegroClient", "AllegroPosix", "AllegroStore"]),
    ],
    swiftLanguageModes: [.v6]
)
