// swift-tools-version: 6.1
// The benchmarks, in a package of their own so a plain `swift build` of Allegro never builds them.
//   cd Benchmarks && swift package benchmark          (microbenchmarks, ordo-one/package-benchmark)
//   cd Benchmarks && swift run -c release allegro-bench --help   (the lag harness)
import PackageDescription

let package = Package(
    name: "AllegroBenchmarks",
    dependencies: [
        .package(name: "Allegro", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "AllegroMicro",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "AllegroWire", package: "Allegro"),
                .product(name: "AllegroRing", package: "Allegro"),
                .product(name: "AllegroSpill", package: "Allegro"),
            ],
            path: "Benchmarks/AllegroMicro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "allegro-bench",
            dependencies: [
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AllegroWire", package: "Allegro"),
                .product(name: "AllegroPosix", package: "Allegro"),
                .product(name: "AllegroClient", package: "Allegro"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
