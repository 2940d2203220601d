// swift-tools-version: 6.1
// The ring's suites under ThreadSanitizer, in a package of their own, so that CI builds only the
// ring (and swift-atomics) with -sanitize=thread instead of the whole of Allegro and its
// dependencies (which took most of CI's ThreadSanitizer step). The sources are the root package's
// Tests/AllegroRingTests, through a symbolic link.
//   cd Tests/ThreadSanitizer && swift test --sanitize=thread
import PackageDescription

let package = Package(
    name: "AllegroRingThreadSanitizer",
    dependencies: [
        .package(name: "Allegro", path: "../.."),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
    ],
    targets: [
        .testTarget(name: "AllegroRingTests", dependencies: [.product(name: "AllegroRing", package: "Allegro"),
                                                             .product(name: "Atomics", package: "swift-atomics")]),
    ],
    swiftLanguageModes: [.v6]
)
