// swift-tools-version:6.0
// libFuzzer targets for Lamina, built only by tools/fuzz.sh (with -sanitize=fuzzer,address and
// -parse-as-library; FuzzEntry starts libFuzzer's driver). A package of its own so that the main package's
// `swift build` and `swift test` never see these flags; it depends on the main package by path.
import PackageDescription

let package = Package(
  name: "LaminaFuzz",
  dependencies: [.package(name: "Lamina", path: "../..")],
  targets: [
    // The `main` SwiftPM links each executable with (see entry.c).
    .target(name: "FuzzEntry"),
    // Model source text (.lam, or IR text) through parsing, lowering, the pass pipelines and C
    // generation.
    .executableTarget(
      name: "FuzzModelSource",
      dependencies: [.product(name: "Lamina", package: "Lamina"), "FuzzEntry"]),
    // Bytes through the .npy and .safetensors readers, and what they read back through the writers.
    .executableTarget(
      name: "FuzzTensorFiles",
      dependencies: [.product(name: "Lamina", package: "Lamina"), "FuzzEntry"]),
  ]
)
