import Foundation
import Lamina

/// `lamina compile FILE.lam -o libmodel.so`: writes the shared library and its C header.
enum CompileCommand: Command {
  static let name = "compile"
  static let summary = "Compile a model to a shared library and a C header"
  static let help = """
    usage: lamina compile FILE.lam -o libmodel.so [--train] [--emit-c DIR] [--cc COMPILER] [--cflags "FLAGS"]
                          [--no-cache] [--model NAME]
                          [--passes A,B,...] [--disable-pass P]

    Generates C for the model, compiles it with the system C compiler and writes the library, plus a
    header (libmodel.h) for using it from C without Lamina.
      --train        include the training steps (lamina_train_step: forward, backward, update)
      --emit-c DIR   also write the generated model.c, model.h and the runtime's lamina_runtime.c there
                     (cc -O3 -march=native -fPIC -shared model.c lamina_runtime.c -o libmodel.so)
      --cc PATH      the C compiler (default: $LAMINA_CC, then cc, clang, gcc)
      --cflags F     compiler flags instead of the defaults (-O3 -march=native -fPIC -shared ...)
      --no-cache     compile even if the library cache ($LAMINA_CACHE_DIR) has this model
      --cache-dir D  the library cache to use instead of $LAMINA_CACHE_DIR (default ~/.cache/lamina)
    \(OptionSpec.passSelectionHelp)
    """
  static let options = OptionSpec(
    valued: ["-o", "--emit-c", "--cc", "--cflags", "--model", "--cache-dir"],
    switches: ["--no-cache", "--train"]
  ).selectingPasses

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
      try AtomicFile.write(Data(compilation.generated.source.utf8), to: directory + "/model.c")
      try AtomicFile.write(Data(compilation.generated.header.utf8), to: directory + "/model.h")
      try AtomicFile.write(
        Data(compilation.generated.runtimeSource.utf8), to: directory + "/lamina_runtime.c")
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
