// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "berth",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "berthd", targets: ["berthd"]),
        .executable(name: "berthctl", targets: ["berthctl"]),
        .library(name: "BerthCore", targets: ["BerthCore"]),
        .library(name: "BerthClient", targets: ["BerthClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
        // HTTP server for the Blazar-compatible REST API, the metrics and the calendar page. Its
        // default traits pull in swift-configuration, which Berth does not use.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // The contract's tables (methods, roles, error codes, the OpenRPC document), generated from
        // schemas/openrpc.json by scripts/gen_contract.py. No dependencies: every layer may read it.
        .target(name: "BerthContract", swiftSettings: strict),
        // JSON value, parser and serializer: exact control over numbers, nesting and errors.
        .target(name: "BerthJSON", swiftSettings: strict),
        // Pure domain: calendar, allocator, leases, hosts, and the ports adapters implement. No I/O.
        .target(
            name: "BerthCore",
            dependencies: ["BerthContract", "BerthJSON"],
            swiftSettings: strict
        ),
        // SQLite persistence (WAL, synchronous=FULL, migrations).
        .target(
            name: "BerthStore",
            dependencies: ["BerthCore", "BerthJSON", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strict
        ),
        // The scheduler actor, method handlers, outbox and simulator adapter.
        .target(
            name: "BerthService",
            dependencies: [
                "BerthContract", "BerthCore", "BerthJSON", "BerthStore", "BerthRPC",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // JSON-RPC 2.0 over a Unix socket; knows nothing of leases.
        .target(
            name: "BerthRPC",
            dependencies: [
                "BerthContract", "BerthJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The OpenStack adapter: clouds.yaml, Keystone v3, Nova (aggregates, flavors, servers).
        .target(
            name: "BerthOpenStack",
            dependencies: [
                "BerthCore", "BerthJSON",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // The Blazar v1 REST API over the same scheduler: Blazar's routes, formats, errors and
        // Keystone token validation, translated onto the contract's methods.
        .target(
            name: "BerthBlazar",
            dependencies: [
                "BerthContract", "BerthCore", "BerthJSON", "BerthRPC", "BerthService",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // sd_notify, watchdog, socket activation, journald.
        .target(
            name: "BerthSystemd",
            dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Daemon wiring: config, clocks, services, signals.
        .target(
            name: "BerthDaemon",
            dependencies: [
                "BerthContract", "BerthCore", "BerthJSON", "BerthStore", "BerthService", "BerthRPC", "BerthSystemd",
                "BerthOpenStack", "BerthBlazar",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // A small blocking JSON-RPC client over the Unix socket (berthctl, tests, benchmarks).
        .target(name: "BerthClient", dependencies: ["BerthContract", "BerthJSON"], swiftSettings: strict),
        .target(
            name: "BerthCtl",
            dependencies: [
                "BerthClient", "BerthContract", "BerthJSON", "BerthCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "berthd", dependencies: ["BerthDaemon"], swiftSettings: strict),
        .executableTarget(name: "berthctl", dependencies: ["BerthCtl"], swiftSettings: strict),
        // Benchmarks (release build: `make bench`); timings are reported, never asserted in tests.
        .executableTarget(
            name: "berth-bench",
            dependencies: ["BerthCore", "BerthClient", "BerthJSON", "BerthStore", "BerthTestSupport"],
            swiftSettings: strict),

        // The daemon's request path in one process, and the reply oracle, for fuzzing (the
        // libFuzzer entry point `berth-fuzz` is below). Built always, so its unit tests run in CI.
        .target(
            name: "BerthFuzz",
            dependencies: [
                "BerthContract", "BerthCore", "BerthJSON", "BerthRPC", "BerthService", "BerthStore", "BerthTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // What several test targets, the fuzzer and the benchmarks share: temporary directories, fixed
        // epochs, Unix-socket addresses, the seeded generator. Only BerthCore, so that a test target
        // using it links nothing heavy it did not already need.
        .target(
            name: "BerthTestSupport", dependencies: ["BerthCore"], path: "Tests/BerthTestSupport", swiftSettings: strict
        ),

        .testTarget(name: "BerthJSONTests", dependencies: ["BerthJSON"], swiftSettings: strict),
        .testTarget(
            name: "BerthCoreTests",
            dependencies: [
                "BerthCore", "BerthJSON", "BerthTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BerthStoreTests",
            dependencies: [
                "BerthStore", "BerthCore", "BerthJSON", "BerthTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "BerthServiceTests",
            dependencies: [
                "BerthContract", "BerthService", "BerthCore", "BerthJSON", "BerthStore", "BerthRPC", "BerthTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
                // A second connection that holds the write lock, to make a commit fail for real.
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BerthRPCTests",
            dependencies: [
                "BerthRPC", "BerthJSON", "BerthTestSupport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BerthOpenStackTests",
            dependencies: ["BerthOpenStack", "BerthJSON", "BerthTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BerthBlazarTests",
            dependencies: ["BerthBlazar", "BerthContract", "BerthCore", "BerthJSON", "BerthRPC"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BerthFuzzTests",
            dependencies: ["BerthContract", "BerthFuzz", "BerthJSON"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BerthSystemdTests",
            dependencies: ["BerthSystemd", "BerthTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
    ]
)

// libFuzzer target (docs/reliability.md, "Fuzzing"): it has no `main` (the fuzzer runtime supplies
// one), so it links only in a `--sanitize=fuzzer` build and is declared only when asked for:
//   BERTH_FUZZ=1 swift build --sanitize=fuzzer --product berth-fuzz --scratch-path .build-fuzz
if Context.environment["BERTH_FUZZ"] == "1" {
    package.targets.append(.executableTarget(name: "berth-fuzz", dependencies: ["BerthFuzz"], swiftSettings: strict))
    package.products.append(.executable(name: "berth-fuzz", targets: ["berth-fuzz"]))
}
