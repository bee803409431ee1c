import Foundation
import Lamina

/// `lamina compile FILE.lam -o libmodel.so`: writes the shared library and its C header.
enum CompileCommand: Command {
  static let name = "compile"
  static let summary = "Compile a model to a shared library and a C header"
  static let help = """
    usage: lamina compile FILE.lam -o libmodel.so [--train] [--emit-c DIR] [--target T] [--cc COMPILER]
                          [--cflags "FLAGS"] [--no-cache] [--model NAME] [--timings]
                          [--passes A,B,...] [--disable-pass P]

    Generates C for the model, compiles it with the system C compiler and writes the library, plus a
    header (libmodel.h) for using it from C without Lamina.
      --train        include the training steps (lamina_train_step: forward, backward, update)
      --emit-c DIR   also write the generated model.c, model.h, the runtime's files and build.sh, the
                     compiler calls that build the library from them
      --timings      print the time of each stage: parsing, every pass, C generation, each C compiler
                     call, the link
    \(OptionSpec.compilingHelp)
    \(OptionSpec.passSelectionHelp)
    """
  static let options = OptionSpec(
    valued: ["-o", "--emit-c", "--model"],
    switches: ["--train", "--timings"]
  ).selectingPasses.compiling

  static func run(_ options: inout Options, console: Console) throws -> Int32 {
    let path = try options.modelPath()
    guard let output = options.value("-o") else { throw UsageError("missing -o libmodel.so") }
    // --train adds the backward pass and optimizer: the library then exports lamina_train_step.
    let model =
      options.isSet("--train")
      ? try loadTrainingModel(path, options: options, console: console)
      : try loadModel(
        path, modelName: options.value("--model"),
        pipeline: try options.selectedPasses(Pipeline.inference), console: console)
    let compileOptions = try compileOptions(options)
    let compilation = try model.buildLibrary(options: compileOptions)
    let library = try Data(contentsOf: URL(fileURLWithPath: compilation.libraryPath))
    if !compileOptions.useCache {
      // Without the cache the library was built in a temporary folder of its own; only the copy stays.
      try? FileManager.default.removeItem(
        at: URL(fileURLWithPath: compilation.libraryPath).deletingLastPathComponent())
    }
    try AtomicFile.write(library, to: output)
    // Beside a FIFO or device (-o /dev/null) there is no place for a header: `/dev/null.h` is not one.
    let headerPath: String? =
      AtomicFile.isStream(output)
      ? nil : URL(fileURLWithPath: output).deletingPathExtension().path + ".h"
    if let headerPath {
      try AtomicFile.write(Data(compilation.generated.header.utf8), to: headerPath)
    }
    if let directory = options.value("--emit-c") {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      try AtomicFile.write(Data(compilation.generated.header.utf8), to: directory + "/model.h")
      for (name, text) in CRuntimeSources.files {
        try AtomicFile.write(Data(text.utf8), to: directory + "/" + name)
      }
      try AtomicFile.write(Data(compilation.generated.source.utf8), to: directory + "/model.c")
      try AtomicFile.write(
        Data(buildScript(compilation.units, flags: compileOptions.flags ?? []).utf8),
        to: directory + "/build.sh")
    }
    if options.isSet("--timings") {
      for timing in model.timings + compilation.timings {
        console.print(
          String(format: "%8.1f ms  ", timing.seconds * 1000) + timing.stage)
      }
      let total = (model.timings + compilation.timings).map(\.seconds).reduce(0, +)
      console.print(
        String(format: "%8.1f ms  ", total * 1000)
          + "total (C compiler calls run in parallel, so their sum can exceed the wall time)")
    }
    console.print(
      "wrote \(output)\(headerPath.map { " and \($0)" } ?? " (no header beside a device or FIFO)") (codegen \(milliseconds(compilation.codegenSeconds)), "
        + (compilation.compiledNow
          ? "C compile \(milliseconds(compilation.compileSeconds)))" : "from the cache)"))
    return 0
  }

  static func compileOptions(_ options: Options) throws -> CompileOptions {
    var compileOptions = CompileOptions()
    compileOptions.compiler = options.value("--cc")
    if let target = options.value("--target") {
      guard let parsed = CompileTarget(rawValue: target) else {
        throw UsageError(
          "unknown --target '\(target)' (targets: \(CompileTarget.allCases.map(\.rawValue).joined(separator: ", ")))"
        )
      }
      compileOptions.target = parsed
    }
    if let flags = options.value("--cflags") {
      compileOptions.flags = flags.split(separator: " ").map(String.init)
    }
    compileOptions.useCache = !options.isSet("--no-cache")
    compileOptions.cacheDirectory = options.value("--cache-dir")
    compileOptions.codegenPasses = try options.selectedPasses(Pipeline.codegen)
    return compileOptions
  }
}

func milliseconds(_ seconds: Double) -> String { String(format: "%.0f ms", seconds * 1000) }

/// The compiler calls that build a library from the files `--emit-c` writes, one per line.
func buildScript(_ units: [TranslationUnit], flags: [String]) -> String {
  func quoted(_ argument: String) -> String {
    argument.allSatisfy { $0.isLetter || $0.isNumber || "-_=./+,".contains($0) }
      ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
  }
  var lines = ["#!/bin/sh", "# Builds libmodel.so from the files beside this script.", "set -e"]
  var objects: [String] = []
  for (index, unit) in units.enumerated() {
    let object = "unit\(index).o"
    objects.append(object)
    lines.append(
      "${CC:-cc} "
        + (unit.flags + flags + ["-c", unit.file, "-o", object]).map(quoted).joined(separator: " "))
  }
  lines.append(
    "${CC:-cc} "
      + (["-shared", "-fPIC"] + flags + objects + ["-o", "libmodel.so", "-lm", "-lpthread"])
      .map(quoted).joined(separator: " "))
  return lines.joined(separator: "\n") + "\n"
}

extension OptionSpec {
  /// The options of every command that compiles a model: `--target`, `--cc`, `--cflags`, the cache.
  var compiling: OptionSpec {
    var spec = self
    spec.valued.formUnion(["--target", "--cc", "--cflags", "--cache-dir"])
    spec.switches.insert("--no-cache")
    return spec
  }

  /// The help lines for the options `compiling` adds.
  static let compilingHelp = """
      --target T     the CPUs the library runs on: portable (default: any x86-64 with AVX2 and FMA,
                     AVX-512 kernels where the CPU has them), x86-64-v3 (AVX2 only), x86-64-v4
                     (requires AVX-512), native (this CPU exactly), generic (no vector extension
                     beyond the architecture's baseline, builds on ARM too; the default there)
      --cc PATH      the C compiler (default: $LAMINA_CC, then cc, clang, gcc)
      --cflags F     compiler flags after the target's (so they win): --cflags "-O1 -g"
      --no-cache     compile even if the library cache ($LAMINA_CACHE_DIR) has this model
      --cache-dir D  the library cache to use instead of $LAMINA_CACHE_DIR (default ~/.cache/lamina)
    """
}
