// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Allegro",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "allegro", targets: ["allegro"]),
        .library(name: "AllegroWire", targets: ["AllegroWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries (Debian: zlib1g-dev, libsqlite3-dev) and the Linux syscall shim.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CAllegroSys"),

        // Wire protocol v1: frames, handshake, records. Pure codec, no I/O.
        .target(name: "AllegroWire"),

        // The command line.
        .executableTarget(
            name: "allegro",
            dependencies: [
                "AllegroWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "AllegroWireTests", dependencies: ["AllegroWire"]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["CZlib", "CSQLite", "CAllegroSys"]),
        .testTarget(name: "AllegroCLITests", dependencies: ["allegro"]),
    ],
    swiftLanguageModes: [.v6]
)
