import Foundation
import LaminaCodegenC
import LaminaIR
import LaminaPasses
import LaminaRuntime
import LaminaSupport

/// How to turn a model into a shared library.
public struct CompileOptions: Sendable {
  /// The C compiler (`--cc`); nil: `LAMINA_CC`, then cc, clang, gcc.
  public var compiler: String?
  /// The CPUs the library runs on (`--target`): portable by default (generic on a machine that is
  /// not x86-64).
  public var target: CompileTarget = .standard
  /// Flags added after the target's on every compiler call (`--cflags`): the user's word wins.
  public var flags: [String]?
  /// Reuse and fill the library cache (`LAMINA_CACHE_DIR`); off: compile into a temporary folder.
  public var useCache = true
  public var cacheDirectory: String?
  /// Threads of the model's pool; 0: one per core (or `LAMINA_NUM_THREADS`).
  public var threads = 0
  /// The passes run on a copy of the graph before C generation (`Pipeline.codegen` by default;
  /// `--disable-pass fusion` removes one).
  public var codegenPasses: [any GraphPass] = Pipeline.codegen

  public init() {}
}

/// A model compiled to C and loaded, with the steps it took.
public struct Compilation: Sendable {
  public var generated: GeneratedModel
  public var libraryPath: String
  /// False when the library came from the cache.
  public var compiledNow: Bool
  public var codegenSeconds: Double
  public var compileSeconds: Double
  /// Each stage after the model's own passes: the backend passes, code generation, each C
  /// compiler call and the link (`lamina compile --timings`).
  public var timings: [StageTiming] = []
  /// The translation units the library is made of, with their flags (`--emit-c` writes them).
  public var units: [TranslationUnit] = []
}

extension Model {
  /// Runs the backend passes (fusion, memory planning) on a copy of `graph`. Decomposition runs
  /// first even when `passes` leaves it out: the C backend has no kernel for the ops it replaces.
  public static func lower(_ graph: Graph, passes: [any GraphPass]) throws -> Graph {
    try lowerTimed(graph, passes: passes).graph
  }

  static func lowerTimed(_ graph: Graph, passes: [any GraphPass]) throws -> (
    graph: Graph, timings: [StageTiming]
  ) {
    var lowered = graph
    let passes =
      passes.contains { $0.name == Decomposition.name } ? passes : [Decomposition()] + passes
    let timings = try PassRunner(passes: passes).run(&lowered)
    return (lowered, timings.map { StageTiming(stage: "pass \($0.pass)", seconds: $0.seconds) })
  }

  /// Generates C for the model without compiling it.
  public func generateC(passes: [any GraphPass] = Pipeline.codegen) throws -> GeneratedModel {
    try generateTimed(passes: passes).generated
  }

  private func generateTimed(passes: [any GraphPass]) throws -> (
    generated: GeneratedModel, timings: [StageTiming]
  ) {
    do {
      let (lowered, timings) = try Model.lowerTimed(graph, passes: passes)
      let (generated, codegen) = try StageTiming.measure("generate C") {
        try CodeGenerator.generate(lowered)
      }
      return (generated, timings + [codegen])
    } catch let diagnostic as Diagnostic {
      throw CompileError(diagnostics: [diagnostic], source: source)
    }
  }

  /// Generates C, compiles it (or finds it in the cache) and returns the library's path.
  public func buildLibrary(options: CompileOptions = CompileOptions()) throws -> Compilation {
    let start = DispatchTime.now().uptimeNanoseconds
    let (generated, codegenTimings) = try generateTimed(passes: options.codegenPasses)
    let generatedAt = DispatchTime.now().uptimeNanoseconds
    let (path, compiledNow, compileTimings, units) = try Model.build(generated, options: options)
    let end = DispatchTime.now().uptimeNanoseconds
    return Compilation(
      generated: generated, libraryPath: path, compiledNow: compiledNow,
      codegenSeconds: Double(generatedAt - start) / 1e9,
      compileSeconds: Double(end - generatedAt) / 1e9,
      timings: codegenTimings + compileTimings, units: units)
  }

  /// Compiles generated C for `options.target` into a library in the cache (or a temporary folder).
  static func build(_ generated: GeneratedModel, options: CompileOptions) throws -> (
    path: String, compiled: Bool, timings: [StageTiming], units: [TranslationUnit]
  ) {
    let compiler = try CCompiler.find(explicitPath: options.compiler, flags: options.flags)
    let cache: LibraryCache
    if options.useCache {
      cache = LibraryCache(directory: options.cacheDirectory ?? LibraryCache.defaultDirectory())
    } else {
      cache = LibraryCache(
        directory: FileManager.default.temporaryDirectory.appendingPathComponent(
          "lamina-\(UUID().uuidString)"
        ).path)
    }
    let units = try translationUnits(generated, target: options.target, compiler: compiler)
    var targetKey = options.target.rawValue
    // Native code is this CPU's: the key holds what -march=native means here.
    if options.target == .native { targetKey += "\u{0}" + (try compiler.nativeMacroDump()) }
    let (path, compiled, timings) = try cache.library(
      units: units, headers: CRuntimeSources.headers, target: targetKey, compiler: compiler)
    return (path, compiled, timings, units)
  }

  /// The translation units of a library for `target`: the model's C, the GEMM and the convolutions
  /// once per instruction set, the thread pool, the CPU check and the exported interface.
  public static func translationUnits(
    _ generated: GeneratedModel, target: CompileTarget, compiler: CCompiler
  ) throws -> [TranslationUnit] {
    let sets = try target.instructionSets(compiler: compiler)
    let runtime = CRuntimeSources.files
    let common = CCompiler.commonFlags
    var units: [TranslationUnit] = []
    for set in sets {
      units.append(
        TranslationUnit(
          file: "model.c", source: generated.source,
          flags: common + set.flags + compiler.kernelOptimization + [
            "-DLAMINA_ISA=\(set.suffix)", "-DLAMINA_ISA_NAME=\"\(set.name)\"",
          ],
          label: "model.c [\(set.name)]", shared: false))
    }
    // Only the element types whose convolutions (lamina_conv.c) and GEMMs model.c calls: an f32
    // model does not wait for the f64 units to compile. The convolutions call the GEMM of their type.
    let callsConvolution = { (name: String) in
      ["forward", "forward_derived", "backward_input", "backward_weight"].contains {
        generated.source.contains("lamina_conv2d_\($0)_\(name)(")
      }
    }
    let gemmTypes = [("float", "f32", "lamina_sgemm("), ("double", "f64", "lamina_dgemm(")].filter {
      generated.source.contains($0.2) || callsConvolution($0.1)
    }
    for set in sets {
      for (type, name, _) in gemmTypes {
        units.append(
          TranslationUnit(
            file: "lamina_gemm.c", source: runtime["lamina_gemm.c"]!,
            flags: common + set.flags + compiler.kernelOptimization + [
              "-DLAMINA_GEMM_T=\(type)", "-DLAMINA_GEMM_SUFFIX=\(name)_\(set.suffix)",
            ],
            label: "lamina_gemm.c [\(name), \(set.name)]", shared: true))
      }
    }
    let convolutionTypes = [("f32", [String]()), ("f64", ["-DLAMINA_CONV_F64"])].filter {
      callsConvolution($0.0)
    }
    for set in sets {
      for (name, defines) in convolutionTypes {
        units.append(
          TranslationUnit(
            file: "lamina_conv.c", source: runtime["lamina_conv.c"]!,
            flags: common + set.flags + compiler.kernelOptimization + [
              "-DLAMINA_ISA=\(set.suffix)", "-DLAMINA_ISA_NAME=\"\(set.name)\"",
            ] + defines,
            label: "lamina_conv.c [\(name), \(set.name)]", shared: true))
      }
    }
    let base = sets.last!
    units.append(
      TranslationUnit(
        file: "lamina_pool.c", source: runtime["lamina_pool.c"]!,
        flags: common + base.flags + ["-O2", "-fvisibility=hidden"], label: "lamina_pool.c",
        shared: true))
    units.append(
      TranslationUnit(
        file: "lamina_cpu.c", source: runtime["lamina_cpu.c"]!,
        flags: common + CompileTarget.baselineFlags + ["-O2", "-fvisibility=hidden"],
        label: "lamina_cpu.c", shared: true))
    var setupFlags =
      common + CompileTarget.baselineFlags + [
        "-O2", "-fvisibility=hidden", "-DLAMINA_TARGET=\"\(target.rawValue)\"",
        "-DLAMINA_ISA_BASE=\(base.suffix)", "-DLAMINA_REQUIRES_BASE=\"\(base.requires)\"",
      ]
    if sets.count > 1 {
      setupFlags += [
        "-DLAMINA_ISA_WIDE=\(sets[0].suffix)", "-DLAMINA_REQUIRES_WIDE=\"\(sets[0].requires)\"",
      ]
    }
    units.append(
      TranslationUnit(
        file: "lamina_model_setup.c", source: runtime["lamina_model_setup.c"]!, flags: setupFlags,
        label: "lamina_model_setup.c", shared: true))
    return units
  }

  /// Compiles a graph that did not come from a model file (a transformed copy, say) and loads it.
  public static func compile(graph: Graph, options: CompileOptions = CompileOptions()) throws
    -> CompiledModel
  {
    let generated = try CodeGenerator.generate(try lower(graph, passes: options.codegenPasses))
    var cached = options
    cached.useCache = true
    let (path, _, _, _) = try build(generated, options: cached)
    let compiled = try CompiledModel(libraryPath: path, threads: options.threads)
    try compiled.setState(try graph.initialModelState())
    return compiled
  }

  /// Compiles the model and loads it, with its parameters set to `parameters` when given.
  public func compile(
    options: CompileOptions = CompileOptions(), parameters: [String: Tensor]? = nil
  ) throws
    -> CompiledModel
  {
    let compilation = try buildLibrary(options: options)
    let compiled = try CompiledModel(libraryPath: compilation.libraryPath, threads: options.threads)
    // The cache is keyed by the source, so this holds unless the cache was tampered with.
    guard compiled.signature == compilation.generated.signature else {
      throw RunError(
        "\(compilation.libraryPath) does not implement model \(graph.name)'s signature; clear the cache"
      )
    }
    // The C code starts state at uniform initial values only; this covers any other initializer.
    try compiled.setState(try graph.initialModelState())
    if let parameters { try compiled.setParameters(parameters) }
    return compiled
  }
}
