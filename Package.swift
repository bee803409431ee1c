// swift-tools-version:6.0
// Lamina: a neural-network compiler. No package dependencies, by design: only the toolchain and the
// system C compiler.
import PackageDescription

let package = Package(
  name: "Lamina",
  products: [
    .library(name: "Lamina", targets: ["Lamina"]),
    .executable(name: "lamina", targets: ["LaminaCommand"]),
  ],
  targets: [
    // Source locations, diagnostics, tensors and their file formats (.npy, .safetensors).
    .target(name: "LaminaSupport"),
    // ONNX import: the protobuf reader, the decoded messages and the translation to `.lam` text.
    .target(name: "LaminaONNX", dependencies: ["LaminaSupport"]),
    // The typed graph IR: types, graph, op table, printer, parser, verifier, reference interpreter.
    .target(name: "LaminaIR", dependencies: ["LaminaSupport"]),
    // The .lam language: lexer, parser, AST and lowering to IR.
    .target(name: "LaminaFrontend", dependencies: ["LaminaSupport", "LaminaIR"]),
    // Graph passes and the pipeline that runs them.
    .target(name: "LaminaPasses", dependencies: ["LaminaSupport", "LaminaIR"]),
    // Lowering the IR to C: the generated kernels and the C runtime library they use.
    .target(
      name: "LaminaCodegenC", dependencies: ["LaminaSupport", "LaminaIR"],
      resources: [
        .embedInCode("runtime/lamina_runtime.h"), .embedInCode("runtime/lamina_interface.h"),
        .embedInCode("runtime/lamina_model.h"), .embedInCode("runtime/lamina_math.h"),
        .embedInCode("runtime/lamina_pool.c"), .embedInCode("runtime/lamina_gemm.c"),
        .embedInCode("runtime/lamina_cpu.c"), .embedInCode("runtime/lamina_model_setup.c"),
        .embedInCode("runtime/lamina_philox.h"),
        .embedInCode("runtime/lamina_conv.h"), .embedInCode("runtime/lamina_conv.c"),
        .embedInCode("runtime/lamina_winograd.h"),
      ]),
    // Compiling C, caching libraries, loading them with dlopen; knows nothing about the IR.
    .target(name: "LaminaRuntime", dependencies: ["LaminaSupport"]),
    // The public façade: `import Lamina`.
    .target(
      name: "Lamina",
      dependencies: [
        "LaminaSupport", "LaminaIR", "LaminaFrontend", "LaminaPasses", "LaminaCodegenC",
        "LaminaRuntime", "LaminaONNX",
      ]),
    // The `lamina` commands, one file per command; a library so tests can run them in-process.
    .target(name: "LaminaCommandLine", dependencies: ["Lamina"]),
    .executableTarget(name: "LaminaCommand", dependencies: ["LaminaCommandLine"]),
    .target(name: "LaminaTestSupport", dependencies: ["Lamina"], path: "Tests/LaminaTestSupport"),
    .testTarget(
      name: "LaminaTests",
      dependencies: [
        "Lamina", "LaminaFrontend", "LaminaCommandLine", "LaminaTestSupport", "LaminaONNX",
      ],
      // Bad model files with their expected diagnostics, read by BadModelTests; the C program
      // SanitizerHarnessTests builds with each example's generated C.
      exclude: ["BadModels", "Fixtures", "PoolHarness", "SanitizerHarness"]),
  ]
)
